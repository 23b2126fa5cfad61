"""Writing a registration's outputs to a folder, all or nothing.

Used by `promptregister register` and by the worker. Files are written to a
private staging folder inside the output folder and moved into place only
when every one of them is complete, so an error or a cancel leaves nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from .errors import PromptRegisterError
from .geometry import Geometry
from .volume import Volume

@dataclass
class ReportInputs:
    """What report.html needs beside the result: the two images and the name of the model that ran."""

    fixed: Volume
    moving: Volume
    model: Optional[str] = None


MAIN_FILES = ("transform.h5", "fixed_rois.seg.nrrd", "moving_rois.seg.nrrd", "fixed_rois.nii.gz", "moving_rois.nii.gz",
              "pairs.json")
RESAMPLED_FILE = "moving_resampled.nii.gz"
REPORT_FILE = "report.html"  # report.REPORT_FILE, without importing the figures here


def check_output_folder(out_dir: os.PathLike, resampled: bool, overwrite: bool) -> Path:
    """The output folder, after refusing to replace earlier results unless asked to."""
    out_dir = Path(out_dir)
    names = list(MAIN_FILES) + ([RESAMPLED_FILE] if resampled else []) + [REPORT_FILE]
    existing = [name for name in names if (out_dir / name).exists()]
    if existing and not overwrite:
        raise PromptRegisterError(f"{out_dir / existing[0]} exists; choose another output folder or allow overwriting")
    if out_dir.exists() and not out_dir.is_dir():
        raise PromptRegisterError(f"{out_dir} exists and is not a folder")
    check_writable(out_dir)
    return out_dir


def check_writable(out_dir: Path) -> None:
    """Create the output folder and write a probe file in it, so that a folder that cannot take the results is
    an error before any work starts, not after a whole registration. Folders made for the probe are removed
    again: a run that fails later leaves nothing behind."""
    created = [folder for folder in [out_dir, *out_dir.parents] if not folder.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(prefix=".promptregister-probe-", dir=out_dir):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise PromptRegisterError(f"cannot write to the output folder {out_dir} ({reason}); choose a folder you can "
                                  "write to with --out-dir") from None
    finally:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break


def write_outputs(result, out_dir: os.PathLike, moving: Optional[Volume] = None,
                  fixed_geometry: Optional[Geometry] = None, report: Optional[ReportInputs] = None) -> Dict[str, Path]:
    """Write transform.h5, the ROI files, pairs.json (with each pair's overlap after registration), the moving
    volume resampled onto the fixed grid when `moving` is given, and report.html with its figures when `report`
    (the fixed and moving volumes and the model's name) is given. Returns {name: path} of what was written."""
    from .io import write_transform, write_volume
    from .warp import warp_volume

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".promptregister-", dir=out_dir))
    try:
        transform = result.transform()
        write_transform(transform, staging / "transform.h5")
        result.pairs.save(staging, metrics=[{"dice_after": round(value, 4)} for value in result.dice_after])
        if moving is not None:
            geometry = fixed_geometry or result.pairs.fixed_geometry
            write_volume(warp_volume(moving, transform, geometry), staging / RESAMPLED_FILE)
        if report is not None:
            from .report import write_report

            write_report(result, report.fixed, report.moving, staging, model=report.model)
        names = sorted(path.name for path in staging.iterdir())
        for name in names:
            (staging / name).replace(out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {name: out_dir / name for name in names}
