"""Slices for 2D models and the exact way back to voxels and millimetres."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import resample_to, rotation_matrix
from promptregister import PromptRegisterError
from promptregister.geometry import Geometry
from promptregister.intensity import IntensityWindow
from promptregister.slicing import SliceFrame, through_plane_axis


def test_through_plane_axis_is_the_largest_spacing():
    assert through_plane_axis(Geometry.create((10, 10, 10), (1, 1, 3))) == 2
    assert through_plane_axis(Geometry.create((10, 10, 10), (3, 1, 1))) == 0


def test_isotropic_tie_goes_to_the_axis_closest_to_superior():
    # k points along LPS S in the identity case ...
    assert through_plane_axis(Geometry.create((10, 10, 10))) == 2
    # ... and j does after a 90 degree rotation about x (j -> S).
    assert through_plane_axis(Geometry.create((10, 10, 10), direction=rotation_matrix([1, 0, 0], 90))) == 1


@pytest.mark.parametrize("spacing, axis", [((1.0, 1.0, 1.0), 2), ((0.5, 1.0, 3.0), 2), ((2.0, 0.5, 1.0), 0)])
def test_mask_round_trip_is_exact(hippocampus, spacing, axis):
    image, labels = hippocampus("007")
    direction = rotation_matrix([0, 0, 1], 25)
    size = [int(round(64 / s)) for s in spacing]
    labels = resample_to(labels, size, spacing, labels.geometry.origin, direction, labels=True)
    frame = SliceFrame.for_geometry(labels.geometry)
    assert frame.axis == axis
    mask = labels.array == 1
    slice_index = int(np.argmax(mask.sum(axis=tuple(a for a in range(3) if a != 2 - frame.axis))))
    plane = frame.extract(mask.astype(np.uint8), slice_index, order=0).astype(bool)
    assert frame.pixel_mm == pytest.approx(min(s for a, s in enumerate(spacing) if a != frame.axis))
    back = frame.mask_to_volume(plane, slice_index)
    expected = np.zeros_like(mask)
    selector = [slice(None)] * 3
    selector[2 - frame.axis] = slice_index
    expected[tuple(selector)] = mask[tuple(selector)]
    np.testing.assert_array_equal(back, expected)


def test_pixel_to_physical_matches_voxel_centres_and_inverts():
    geometry = Geometry.create((40, 20, 12), (0.5, 1.0, 2.5), (3.0, -4.0, 7.0), rotation_matrix([1, 1, 0], 15))
    frame = SliceFrame.for_geometry(geometry)
    assert frame.axis == 2 and frame.shape == (40, 40)
    # Columns follow i (same spacing as pixels): column c is voxel i = c exactly.
    point = frame.pixel_to_physical(5, np.array(7.0), np.array(13.0))
    # Rows follow j (1.0 mm, pixels 0.5 mm): row r sits at j = (r + 0.5) / 2 - 0.5.
    np.testing.assert_allclose(point, geometry.index_to_physical(np.array([13.0, 3.25, 5.0])))
    slice_index, row, col = frame.physical_to_pixel(point)
    np.testing.assert_allclose([slice_index, row, col], [5, 7, 13], atol=1e-9)


def test_slice_out_of_range_is_an_error():
    frame = SliceFrame.for_geometry(Geometry.create((4, 4, 3)))
    with pytest.raises(PromptRegisterError, match="outside the volume"):
        frame.extract(np.zeros((3, 4, 4)), 3)


def test_intensity_window_uses_the_whole_volume(hippocampus):
    image, _ = hippocampus("001")
    window = IntensityWindow.from_percentiles(image.array)
    low, high = np.percentile(image.array, [0.5, 99.5])
    assert (window.low, window.high) == pytest.approx((low, high))
    frame = SliceFrame.for_geometry(image.geometry)
    rgb = window.to_rgb(frame.extract(image.array, 10))
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 2]).all()
    # a dim slice stays dim: the window is not re-stretched per slice
    assert rgb.mean() < window.to_rgb(frame.extract(image.array, 32)).mean()


def test_ct_presets():
    lung = IntensityWindow.ct_preset("lung")
    assert (lung.low, lung.high) == (-1350.0, 150.0)
    assert IntensityWindow.ct_preset("soft-tissue").to_uint8(np.array([-160.0, 40.0, 240.0])).tolist() == [0, 128, 255]
    with pytest.raises(PromptRegisterError, match="Unknown CT window"):
        IntensityWindow.ct_preset("liver")
