"""Writing a registration's outputs to a folder, all or nothing.

Used by `promptregister register` and by the worker. Files are written to a
private staging folder inside the output folder and moved into place only
when every one of them is complete, so an error or a cancel leaves nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .errors import PromptRegisterError
from .geometry import Geometry
from .io.atomic import remove_stale_temporaries, staging_folder
from .io.write_errors import check_free_space, no_space_error
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
_OTHER_OUTPUTS = re.compile(r"(fixed|moving)_rois\.layer\d+\.nii\.gz|report_[a-z_]+\.png")
"""Extra label-map layers (RoiPairs.save) and the report's pictures (report/page.FIGURES)."""


def earlier_outputs(out_dir: Path) -> List[str]:
    """Names of files in `out_dir` that a registration writes: what --overwrite replaces, and removes when the new
    run does not write them again, so the folder holds one run's files only."""
    if not out_dir.is_dir():
        return []
    known = set(MAIN_FILES) | {RESAMPLED_FILE, REPORT_FILE}
    return sorted(path.name for path in out_dir.iterdir()
                  if path.is_file() and (path.name in known or _OTHER_OUTPUTS.fullmatch(path.name)))


def check_output_folder(out_dir: os.PathLike, overwrite: bool) -> Path:
    """The output folder, after refusing to replace earlier results unless asked to."""
    out_dir = Path(out_dir)
    existing = earlier_outputs(out_dir)
    if existing and not overwrite:
        raise PromptRegisterError(f"{out_dir / existing[0]} exists; choose another output folder or allow overwriting")
    if out_dir.exists() and not out_dir.is_dir():
        raise PromptRegisterError(f"{out_dir} exists and is not a folder")
    check_writable(out_dir)
    remove_stale_temporaries(out_dir)
    return out_dir


def output_bytes(geometry: Geometry, resampled: bool) -> int:
    """About how much a registration's outputs take on disk: the displacement field in float64 (transform.h5,
    uncompressed), the resampled moving image in float32 when asked for, and a megabyte for the rest."""
    voxels = int(np.prod(geometry.shape))
    return voxels * (24 + (4 if resampled else 0)) + (1 << 20)


def check_output_space(out_dir: Path, geometry: Geometry, resampled: bool) -> None:
    """Refuse before the work when the outputs will not fit on out_dir's disk."""
    check_free_space(out_dir if out_dir.exists() else _existing_parent(out_dir), output_bytes(geometry, resampled),
                     "the registration's outputs")


def _existing_parent(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path(".")


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
    staging = staging_folder(out_dir)
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
        stale = [name for name in earlier_outputs(out_dir) if name not in names]
        for name in names:
            (staging / name).replace(out_dir / name)
        for name in stale:  # an earlier run's files that this one did not write (--overwrite)
            (out_dir / name).unlink(missing_ok=True)
    except OSError as error:  # pairs.json, the report's pictures: Python's own writes
        full = no_space_error(staging, error)
        if full is None:
            raise
        raise full from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {name: out_dir / name for name in names}
