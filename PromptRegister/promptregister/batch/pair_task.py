"""One pair of a cohort: register it into <out>/<id>/, all or nothing, and leave a done-marker last.

The marker (done.json) holds the SHA-256 of every input file, the row's prompts and the options. A rerun skips a
pair whose marker matches and redoes one whose inputs or options changed; a pair without a marker (a run that
died mid-pair) is redone. A failure for a user-input reason (PromptRegisterError) becomes a "failed" record with
its message; it never stops the other pairs. This module is the task the Dask runner (to come) will schedule.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from ..errors import PromptRegisterError
from ..io.atomic import atomic_output
from ..checksums import sha256_of as file_sha256
from .manifest import PATH_COLUMNS, PairRow

DONE_FILE = "done.json"


def fingerprint(row: PairRow, options: Dict[str, Any]) -> Dict[str, Any]:
    """What a result depends on: each input file's SHA-256, the prompts and the options."""
    files = {column: file_sha256(getattr(row, column)) for column in PATH_COLUMNS if getattr(row, column)}
    prompts = {"points": [list(p) for p in row.points], "text": row.text, "auto": row.auto}
    return {"files": files, "prompts": prompts, "options": json.loads(json.dumps(options, sort_keys=True))}


def pair_state(row: PairRow, out_root: Path, options: Dict[str, Any]) -> str:
    """"done" (the marker matches), "changed" (a marker for other inputs or options) or "new"."""
    marker = Path(out_root) / row.id / DONE_FILE
    if not marker.is_file():
        return "new"
    try:
        stored = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return "changed"
    return "done" if stored.get("fingerprint") == fingerprint(row, options) else "changed"


def run_pair(row: PairRow, out_root: Path, options: Dict[str, Any], segmenter_for: Callable[[], Any],
             detector_for: Optional[Callable[[], Any]] = None) -> Dict[str, Any]:
    """Register one row and evaluate it; returns its summary record (status ok or failed, never raises for a
    user-input problem). `segmenter_for` / `detector_for` return warm models (loaded once per worker)."""
    from ..io import read_label_map, read_volume
    from ..methods.promptreg import PointPrompt
    from ..outputs import write_outputs
    from ..register import options_from_flat, register

    started = time.perf_counter()
    record: Dict[str, Any] = {"id": row.id, "status": "ok"}
    folder = Path(out_root) / row.id
    try:
        marker = folder / DONE_FILE
        if marker.exists():
            marker.unlink()  # outputs about to change: the old marker must not vouch for them
        fixed, moving = read_volume(row.fixed), read_volume(row.moving)
        flat = dict(options)
        preset = str(flat.pop("preset", "default"))
        result = register(fixed, moving, segmenter=segmenter_for(), text=row.text,
                          points=[PointPrompt(p) for p in row.points], auto=row.auto,
                          detector=detector_for() if (row.text and detector_for) else None,
                          options=options_from_flat(flat, preset=preset))
        write_outputs(result, folder)
        record["pairs"] = len(result.pairs)
        record["folding_percent"] = float(result.jacobian.get("folding_percent", 0.0))
        if row.fixed_labels and row.moving_labels:
            record.update(label_figures(read_label_map(row.fixed_labels), read_label_map(row.moving_labels),
                                        result.transform(), row))
        record["seconds"] = round(time.perf_counter() - started, 3)
        with atomic_output(marker) as temporary:  # last: its presence says every output is complete
            temporary.write_text(json.dumps({"fingerprint": fingerprint(row, options), "record": record}, indent=1))
    except PromptRegisterError as error:
        record.update(status="failed", message=str(error), seconds=round(time.perf_counter() - started, 3))
    return record


def label_figures(fixed_labels, moving_labels, transform, row: PairRow) -> Dict[str, float]:
    """Mean Dice and HD95 before and after, and TRE with landmarks (evaluate.py)."""
    from ..evaluate import evaluate_registration
    from ..landmarks import read_landmarks

    landmarks = {}
    if row.fixed_landmarks and row.moving_landmarks:
        landmarks = {"fixed_landmarks": read_landmarks(row.fixed_landmarks),
                     "moving_landmarks": read_landmarks(row.moving_landmarks)}
    figures = evaluate_registration(fixed_labels, moving_labels, transform, **landmarks)
    mean = figures["mean"]
    out = {"dice_before": mean["dice_before"], "dice_after": mean["dice_after"],
           "hd95_before": mean["hd95_mm_before"], "hd95_after": mean["hd95_mm_after"]}
    if "tre" in figures:
        out.update(tre_before=figures["tre"]["before_mean_mm"], tre_after=figures["tre"]["after_mean_mm"])
    return {key: round(float(value), 4) for key, value in out.items()}

