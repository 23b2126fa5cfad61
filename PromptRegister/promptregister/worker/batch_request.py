"""The worker's "batch" request: a cohort (batch.run) on the worker's machine, for Slicer's Logic and scripts.

    {"type": "batch", "manifest": "/data/pairs.csv", "out_dir": "/data/cohort", "workers": 2,
     "settings": {"model": "minisam", "options": {"grid_spacing_mm": 6}}}

Paths are the worker's (a remote worker reads its own disks). Progress arrives as stage "batch" with the share of
pairs finished; a cancel stops the pairs not yet finished (those finished keep their outputs and markers, so a
later request skips them). The result carries the summary records, their counts and the summary files.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Callable, Dict

from .protocol import ProtocolError


def run_batch_request(request: Dict[str, Any], progress: Callable[[str, float], None]) -> Dict[str, Any]:
    from ..batch import BatchSettings, run

    manifest, out_dir = request.get("manifest"), request.get("out_dir")
    for name, value in (("manifest", manifest), ("out_dir", out_dir)):
        if not isinstance(value, str) or not value:
            raise ProtocolError("bad_request", f'"{name}" (a path on the worker\'s machine) is required')
    values = request.get("settings") or {}
    known = {field.name for field in fields(BatchSettings)}
    if not isinstance(values, dict) or set(values) - known:
        raise ProtocolError("bad_request", f'"settings" takes the fields {", ".join(sorted(known))}; got '
                                           f"{sorted(set(values) - known) if isinstance(values, dict) else values!r}")
    workers = request.get("workers")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool)):
        raise ProtocolError("bad_request", '"workers" must be a whole number (0: in the worker process itself)')
    progress("batch", 0.0)
    summary = run(manifest, out_dir, settings=BatchSettings(**values), workers=workers,
                  scheduler=request.get("scheduler") or None,
                  on_progress=lambda done, total: progress("batch", done / max(total, 1)))
    return {"records": list(summary), "counts": summary.counts, "csv": str(summary.csv), "html": str(summary.html),
            "dashboard": summary.dashboard}
