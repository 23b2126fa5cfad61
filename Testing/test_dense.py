"""Dense stage on real anatomy: known deformations, inter-subject pairs, geometry invariance.

Bounds come from runs on ../shared/data (see docs/dense-sweep.md): with default
options the recovered field's median error inside the labels was 0.34-0.62 mm
for random smooth fields of median 1.9-3.0 mm, Dice after 0.957-0.997;
inter-subject hippocampus pairs went from 0.33-0.82 to 0.92-0.96 Dice with no
folding. The asserted bounds leave about a third of that as margin.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import resample_to, rotation_matrix
from promptregister import PromptRegisterError
from promptregister.dense import FitOptions, fit_linear, fit_transform
from promptregister.dense.bspline import BSplineGrid
from promptregister.geometry import Geometry
from promptregister.io.transforms import displacement_field_transform
from promptregister.metrics import dice, jacobian_stats
from promptregister.roipairs import RoiPair, RoiPairs
from promptregister.volume import Volume
from promptregister.warp import warp_volume


def smooth_random_field(geometry: Geometry, seed: int, std_mm: float = 5.0, spacing_mm: float = 20.0) -> np.ndarray:
    """A smooth random displacement field (k, j, i, 3) in mm: cubic B-spline of random control points."""
    grid = BSplineGrid(geometry.size, geometry.spacing, spacing_mm)
    control = torch.as_tensor(np.random.default_rng(seed).normal(0.0, std_mm, grid.parameter_shape))
    weights = grid.weights([np.arange(n) for n in geometry.size], torch.device("cpu"), torch.float64)
    return BSplineGrid.evaluate(control, weights).permute(1, 2, 3, 0).numpy().copy()


@pytest.mark.parametrize("case", ["001", "020"])
def test_known_deformation_is_recovered(hippocampus, case):
    _, labels = hippocampus(case)
    geometry = labels.geometry
    truth = smooth_random_field(geometry, seed=int(case))
    # fixed(p) = labels(p + u(p)), so fixed point p corresponds to moving point p + u(p).
    fixed = warp_volume(labels, displacement_field_transform(truth, geometry), geometry, labels=True)
    result = fit_transform(RoiPairs.from_label_maps(fixed, labels))
    inside = fixed.array > 0
    magnitude = np.median(np.linalg.norm(truth, axis=-1)[inside])
    error = np.median(np.linalg.norm(result.field - truth, axis=-1)[inside])
    assert magnitude > 1.5  # the test is only meaningful for a real deformation
    assert error < 1.0 and error < magnitude / 2
    warped = warp_volume(labels, result.transform(), geometry, labels=True).array
    for label in (1, 2):
        assert dice(fixed.array == label, warped == label) > 0.93
    assert jacobian_stats(result.field, geometry)["folding_percent"] < 0.1


@pytest.mark.parametrize("fixed_case, moving_case", [("001", "004"), ("014", "015")])
def test_inter_subject_pairs_improve_clearly(hippocampus, fixed_case, moving_case):
    _, fixed = hippocampus(fixed_case)
    _, moving = hippocampus(moving_case)
    result = fit_transform(RoiPairs.from_label_maps(fixed, moving))
    before = warp_volume(moving, sitk.Transform(3, sitk.sitkIdentity), fixed.geometry, labels=True).array
    after = warp_volume(moving, result.transform(), fixed.geometry, labels=True).array
    dice_before = np.mean([dice(fixed.array == label, before == label) for label in (1, 2)])
    dice_after = np.mean([dice(fixed.array == label, after == label) for label in (1, 2)])
    assert dice_after > 0.88
    assert dice_after > dice_before + 0.1
    assert jacobian_stats(result.field, fixed.geometry)["folding_percent"] < 0.1
    assert all(level.stopped == "converged" for level in result.levels[:-1])


def test_field_maps_p_to_p_plus_u_and_is_the_itk_transform(hippocampus):
    _, fixed = hippocampus("007")
    _, moving = hippocampus("008")
    result = fit_transform(RoiPairs.from_label_maps(fixed, moving), FitOptions(max_iterations=40))
    transform = result.transform()
    rng = np.random.default_rng(1)
    for index in rng.integers(0, 64, size=(20, 3)):
        point = fixed.geometry.index_to_physical(index.astype(float))
        expected = point + result.field[index[2], index[1], index[0]]
        np.testing.assert_allclose(transform.TransformPoint(tuple(point)), expected, atol=1e-6)


def test_same_anatomy_on_rotated_anisotropic_grids_gives_the_same_physical_map(hippocampus):
    _, fixed = hippocampus("014")
    _, moving = hippocampus("015")
    reference = fit_transform(RoiPairs.from_label_maps(fixed, moving)).transform()
    # The moving anatomy on a rotated grid with anisotropic voxels, covering the same region.
    direction = rotation_matrix([1, 1, 3], 20)
    centre = moving.geometry.index_to_physical(np.array([31.5, 31.5, 31.5]))
    spacing = np.array([0.8, 1.0, 1.6])
    size = np.ceil(80 / spacing).astype(int)
    origin = centre - direction @ (spacing * (size - 1) / 2)
    moving_rotated = resample_to(moving, size, spacing, origin, direction, labels=True)
    rotated = fit_transform(RoiPairs.from_label_maps(fixed, moving_rotated)).transform()
    k, j, i = np.nonzero(fixed.array)
    points = fixed.geometry.index_to_physical(np.stack([i, j, k], axis=-1).astype(float))
    difference = [np.linalg.norm(np.subtract(reference.TransformPoint(tuple(p)), rotated.TransformPoint(tuple(p)))) for p in points]
    # Resampling labels onto 0.8-1.6 mm voxels moves boundaries by up to about half a voxel.
    assert np.median(difference) < 0.6
    assert np.percentile(difference, 95) < 1.5


def test_rigid_motion_of_the_grid_is_recovered_exactly(hippocampus):
    _, labels = hippocampus("019")
    rotation = rotation_matrix([0.3, -0.2, 1.0], 12)
    shift = np.array([4.0, -3.0, 7.5])
    g = labels.geometry
    # The same voxels placed elsewhere in space: moving point = R p + t for fixed point p.
    moved = Geometry.create(g.size, g.spacing, rotation @ np.asarray(g.origin) + shift, rotation @ g.direction_matrix)
    pairs = RoiPairs.from_label_maps(labels, Volume(labels.array, moved))
    rigid = fit_linear(pairs, "rigid")
    np.testing.assert_allclose(rigid.matrix, rotation, atol=1e-9)
    np.testing.assert_allclose(rigid.translation, shift, atol=1e-7)
    translation = fit_linear(RoiPairs.from_label_maps(labels, Volume(labels.array, Geometry.create(g.size, g.spacing, np.asarray(g.origin) + shift))), "translation")
    np.testing.assert_allclose(translation.translation, shift, atol=1e-9)


def test_linear_fit_falls_back_when_pairs_do_not_constrain_it(hippocampus):
    _, labels = hippocampus("001")
    single = np.zeros(labels.array.shape, bool)
    single[30, 30, 30] = True
    moved = single.copy()
    moved[30, 30, 30], moved[31, 30, 30] = False, True
    fit = fit_linear(RoiPairs(labels.geometry, labels.geometry, [RoiPair(single, moved)]), "affine")
    assert fit.model == "translation" and "collinear" in fit.note
    np.testing.assert_allclose(fit.translation, [0, 0, 1])


def test_same_seed_gives_identical_results(hippocampus):
    _, fixed = hippocampus("024")
    _, moving = hippocampus("025")
    options = FitOptions(max_iterations=30, seed=3)
    first = fit_transform(RoiPairs.from_label_maps(fixed, moving), options)
    second = fit_transform(RoiPairs.from_label_maps(fixed, moving), options)
    np.testing.assert_array_equal(first.field, second.field)


def test_linear_only_field_is_the_pre_alignment(hippocampus):
    _, fixed = hippocampus("033")
    _, moving = hippocampus("034")
    result = fit_transform(RoiPairs.from_label_maps(fixed, moving), FitOptions(nonrigid=False))
    points = fixed.geometry.voxel_centres()
    np.testing.assert_allclose(result.field, result.linear.apply(points) - points)
    assert result.levels == []


def test_one_slice_images_stay_in_plane(hippocampus):
    _, fixed3d = hippocampus("036")
    _, moving3d = hippocampus("037")
    k = int(np.argmax((fixed3d.array > 0).sum(axis=(1, 2))))
    flat = Geometry.create((64, 64, 1))
    fixed = Volume(fixed3d.array[k : k + 1], flat)
    moving = Volume(moving3d.array[k : k + 1], flat)
    labels = sorted(set(np.unique(fixed.array)) & set(np.unique(moving.array)) - {0})
    result = fit_transform(RoiPairs.from_label_maps(fixed, moving, labels))
    assert np.abs(result.field[..., 2]).max() < 1e-9
    after = warp_volume(moving, result.transform(), flat, labels=True).array
    before = np.mean([dice(fixed.array == l, moving.array == l) for l in labels])
    assert np.mean([dice(fixed.array == l, after == l) for l in labels]) > before + 0.05


def test_bad_options_and_devices_are_clear_errors(hippocampus):
    _, fixed = hippocampus("001")
    pairs = RoiPairs.from_label_maps(fixed, fixed)
    with pytest.raises(PromptRegisterError, match="regulariser must be"):
        fit_transform(pairs, FitOptions(regulariser="tps"))
    with pytest.raises(PromptRegisterError, match="No ROI pairs"):
        fit_transform(RoiPairs(fixed.geometry, fixed.geometry))
    if not torch.cuda.is_available():
        with pytest.raises(PromptRegisterError, match="no CUDA GPU"):
            fit_transform(pairs, FitOptions(device="cuda"))
