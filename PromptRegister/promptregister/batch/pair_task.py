"""One pair of a cohort: register it into <out>/<id>/, all or nothing, and leave a done-marker last.

The marker (done.json) holds the SHA-256 of every input file, the row's prompts and the settings' fingerprint,
and the size and SHA-256 of every output the pair wrote. A rerun skips a pair only when its marker matches and
its outputs are still there as written; it redoes one whose inputs or settings changed, whose outputs are
missing or changed (deleted or overwritten by hand), or whose marker predates the output checksums; a pair
without a marker (a run that died mid-pair) is redone. A failure for a user-input reason (PromptRegisterError)
becomes a "failed" record with its message; it never stops the other pairs. `run_pair` is the task the runner
schedules, in-process or on Dask workers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Mapping, NamedTuple, Optional

from ..checksums import known_sha256, sha256_of
from ..errors import PromptRegisterError
from ..io.atomic import atomic_output
from . import warm_models
from .manifest import PATH_COLUMNS, PairRow
from .settings import BatchSettings

DONE_FILE = "done.json"


def file_digest(path: Path) -> str:
    """The file's SHA-256, read once per run for an unchanged file (an atlas shared by many pairs)."""
    return known_sha256(path)


def fingerprint(row: PairRow, settings: BatchSettings) -> Dict[str, Any]:
    """What a result depends on: each input file's SHA-256, the prompts and the settings."""
    files = {column: file_digest(getattr(row, column)) for column in PATH_COLUMNS if getattr(row, column)}
    prompts = {"points": [list(p) for p in row.points], "text": row.text, "auto": row.auto}
    if row.point_pairs:  # only when present, so the markers of earlier runs still match
        prompts["point_pairs"] = [[list(m), list(f)] for m, f in row.point_pairs]
    return {"files": files, "prompts": prompts, "settings": settings.fingerprint()}


class PairCheck(NamedTuple):
    """A pair's state on a rerun and, when it must run again, why (for the console and the summary)."""

    state: str
    """"done", "changed" (it must run again) or "new" (no marker)."""
    reason: Optional[str] = None
    """Why a "changed" pair runs again when that is not its inputs or settings: its outputs, its marker."""


def pair_check(row: PairRow, out_root: Path, settings: BatchSettings) -> PairCheck:
    """Whether the pair is done: its marker matches its inputs and settings AND every output it recorded is in
    its folder with the recorded size and SHA-256 (a deleted or replaced transform.h5 makes it due again)."""
    folder = Path(out_root) / row.id
    marker = folder / DONE_FILE
    if not marker.is_file():
        return PairCheck("new")
    try:
        stored = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return PairCheck("changed", f"its {DONE_FILE} cannot be read")
    if not isinstance(stored, dict) or stored.get("fingerprint") != fingerprint(row, settings):
        return PairCheck("changed")
    outputs = stored.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return PairCheck("changed", f"its {DONE_FILE} was written by an earlier version, without its outputs' "
                                    "checksums")
    if any(Path(name).name != name for name in outputs):  # a marker names files in its own folder only
        return PairCheck("changed", f"its {DONE_FILE} cannot be read")
    for name, expected in sorted(outputs.items()):
        problem = output_problem(folder / name, expected)
        if problem:
            return PairCheck("changed", f"its {name} {problem}")
    return PairCheck("done")


def pair_state(row: PairRow, out_root: Path, settings: BatchSettings) -> str:
    """"done" (the marker matches and the outputs are as written), "changed" (it must run again) or "new"."""
    return pair_check(row, out_root, settings).state


def output_record(files: Mapping[str, Path]) -> Dict[str, Dict[str, Any]]:
    """{name: {"bytes", "sha256"}} of the files a pair wrote: what its marker vouches for."""
    return {name: {"bytes": Path(path).stat().st_size, "sha256": sha256_of(Path(path))}
            for name, path in sorted(files.items())}


def output_problem(path: Path, expected: Any) -> Optional[str]:
    """What is wrong with one recorded output ("is missing", "changed since it was written"), or None. The size
    is compared first, so that a truncated file is not read."""
    if not path.is_file():
        return "is missing"
    if not isinstance(expected, dict):
        return "has no checksum in the marker"
    if path.stat().st_size != expected.get("bytes") or sha256_of(path) != expected.get("sha256"):
        return "changed since it was written"
    return None


def stored_record(row: PairRow, out_root: Path) -> Dict[str, Any]:
    """The record a completed pair's marker keeps (its figures), for a rerun that skips it."""
    return dict(json.loads((Path(out_root) / row.id / DONE_FILE).read_text(encoding="utf-8"))["record"])


def run_pair(row: PairRow, out_root: Path, settings: BatchSettings) -> Dict[str, Any]:
    """Register one row and evaluate it; returns its summary record (status ok or failed; never raises for a
    user-input problem). Models come warm from this process's cache (warm_models)."""
    from ..io import read_label_map, read_volume
    from ..job import RegisterJob, run_job
    from ..methods.point_pairs import PointPair
    from ..methods.promptreg import PointPrompt

    warm_models.tune_allocator()
    started = time.perf_counter()
    pool = warm_models.POOL
    loaded_before = pool.load_seconds
    record: Dict[str, Any] = {"id": row.id, "status": "ok", "worker": warm_models.worker_name()}
    folder = Path(out_root) / row.id
    try:
        marker = folder / DONE_FILE
        if marker.exists():
            marker.unlink()  # outputs about to change: the old marker must not vouch for them
        fixed, moving = read_volume(row.fixed), read_volume(row.moving)
        device = warm_models.task_device(settings)
        job = RegisterJob(fixed, moving, settings.register_options(device), folder,
                          points=[PointPrompt(p) for p in row.points],
                          point_pairs=[PointPair(m, f) for m, f in row.point_pairs], text=row.text,
                          auto=row.auto, model=settings.model, checkpoint=settings.checkpoint,
                          decoder=settings.decoder, detector=settings.detector,
                          detector_checkpoint=settings.detector_checkpoint, device=device,
                          resampled=settings.resampled, report=settings.report)
        outcome = run_job(job, pool)
        result, written = outcome.registration, outcome.files
        record["pairs"] = len(result.pairs)
        record["folding_percent"] = round(float(result.jacobian.get("folding_percent", 0.0)), 4)
        if result.warnings:
            record["message"] = "; ".join(result.warnings)
        if row.fixed_labels and row.moving_labels:
            record.update(label_figures(read_label_map(row.fixed_labels), read_label_map(row.moving_labels),
                                        result.transform(), row))
        if pool.load_seconds > loaded_before:  # this pair loaded the worker's models (the first of its worker)
            record["model_load_s"] = round(pool.load_seconds - loaded_before, 3)
        record["seconds"] = round(time.perf_counter() - started, 3)
        stored = {"fingerprint": fingerprint(row, settings), "outputs": output_record(written), "record": record}
        with atomic_output(marker) as temporary:  # last: its presence says every output is complete
            temporary.write_text(json.dumps(stored, indent=1), encoding="utf-8")
    except PromptRegisterError as error:
        record.update(status="failed", message=str(error), seconds=round(time.perf_counter() - started, 3))
        if pool.load_seconds > loaded_before:
            record["model_load_s"] = round(pool.load_seconds - loaded_before, 3)
    return record


def label_figures(fixed_labels, moving_labels, transform, row: PairRow) -> Dict[str, float]:
    """Mean Dice and HD95 before and after, Dice per label (dice_before_<label>, dice_after_<label>), and TRE with
    landmarks (evaluate.py)."""
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
    for label in figures["labels"]:
        out[f"dice_before_{label['label']}"] = label["dice_before"]
        out[f"dice_after_{label['label']}"] = label["dice_after"]
    return {key: round(float(value), 4) for key, value in out.items()}
