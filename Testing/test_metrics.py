"""Quality figures on constructed cases whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from promptregister import PromptRegisterError
from promptregister.geometry import Geometry
from promptregister.metrics import (centroid_distance, dice, hausdorff95, jacobian_stats, sd_log_jacobian,
                                   target_registration_error)


def ball(geometry: Geometry, centre_mm, radius_mm) -> np.ndarray:
    points = geometry.voxel_centres()
    return np.linalg.norm(points - np.asarray(centre_mm), axis=-1) <= radius_mm


def test_dice_of_known_overlap():
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 4), bool)
    a[0, :2] = True  # 8 voxels
    b[0, 1:3] = True  # 8 voxels, 4 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert np.isnan(dice(np.zeros(3, bool), np.zeros(3, bool)))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 0.5, 2.0)])
def test_shifted_balls_give_shift_as_hd95_and_centroid_distance(spacing):
    geometry = Geometry.create([int(40 / s) for s in spacing], spacing)
    a = ball(geometry, (20, 20, 20), 8)
    b = ball(geometry, (20, 20, 26), 8)  # 6 mm along z
    assert centroid_distance(a, b, geometry) == pytest.approx(6.0, abs=0.05)
    assert hausdorff95(a, b, geometry) == pytest.approx(6.0, abs=max(spacing))


def test_jacobian_of_a_linear_scaling_and_a_fold():
    geometry = Geometry.create((10, 10, 10), (2.0, 1.0, 0.5))
    points = geometry.voxel_centres()
    stats = jacobian_stats(0.1 * points, geometry)  # p -> 1.1 p
    assert stats["jacobian_min"] == pytest.approx(1.331) and stats["folding_percent"] == 0
    flipped = points * np.array([-2.0, 0.0, 0.0])  # p_x -> -p_x: every voxel folds
    assert jacobian_stats(flipped, geometry)["folding_percent"] == pytest.approx(100.0)
    assert stats["sdlogj"] == pytest.approx(0.0, abs=1e-9)  # a uniform scaling changes every volume alike


def test_sdlogj_is_learn2regs_spread_of_log_det_plus_3_inside_a_2_voxel_border():
    determinant = np.ones((6, 6, 6))
    determinant[3, 3, 3] = np.e * 4 - 3  # log(det + 3) = 1 + log 4 at one voxel, log 4 at the others
    logs = np.full(8, np.log(4.0))  # the 2 x 2 x 2 voxels inside the border
    logs[-1] += 1.0
    assert sd_log_jacobian(determinant) == pytest.approx(logs.std())
    determinant[0, 0, 0] = -100.0  # a fold in the border is not counted ...
    assert sd_log_jacobian(determinant) == pytest.approx(logs.std())
    determinant[2, 2, 2] = -5.0  # ... one inside is, clipped to 1e-9 instead of NaN
    logs[0] = np.log(1e-9)
    assert sd_log_jacobian(determinant) == pytest.approx(logs.std())


def test_tre_needs_matching_landmarks():
    np.testing.assert_allclose(target_registration_error(np.zeros((2, 3)), np.array([[3, 4, 0], [0, 0, 1.0]])), [5, 1])
    with pytest.raises(PromptRegisterError, match="Landmark counts differ"):
        target_registration_error(np.zeros((2, 3)), np.zeros((3, 3)))
