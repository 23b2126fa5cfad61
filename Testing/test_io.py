"""Reading images in physical space, atomic writing and clear errors for bad input."""

from __future__ import annotations


import numpy as np
import pytest
import SimpleITK as sitk

from conftest import rotation_matrix
from promptregister import PromptRegisterError
from promptregister.geometry import Geometry
from promptregister.io import read_label_map, read_transform, read_volume, write_transform, write_volume
from promptregister.io.transforms import displacement_field_transform
from promptregister.volume import Volume


def test_nifti_geometry_matches_simpleitk(hippocampus_paths):
    image_path, _ = hippocampus_paths("001")
    volume = read_volume(image_path)
    reference = sitk.ReadImage(str(image_path))
    assert volume.geometry.size == reference.GetSize()
    assert volume.array.shape == reference.GetSize()[::-1]
    index = (10.5, 20.0, 33.25)
    np.testing.assert_allclose(volume.geometry.index_to_physical(np.array(index)), reference.TransformContinuousIndexToPhysicalPoint(index))


def test_rotated_anisotropic_geometry_maps_like_itk():
    direction = rotation_matrix([1, 2, 3], 37)
    geometry = Geometry.create((5, 6, 7), (0.7, 1.1, 2.5), (-3.0, 4.0, 10.0), direction)
    image = sitk.Image([5, 6, 7], sitk.sitkFloat32)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    for index in [(0, 0, 0), (4.0, 2.5, 6.0), (1.2, 3.4, 5.6)]:
        point = geometry.index_to_physical(np.array(index))
        np.testing.assert_allclose(point, image.TransformContinuousIndexToPhysicalPoint(index), atol=1e-9)
        np.testing.assert_allclose(geometry.physical_to_index(point), index, atol=1e-9)


def test_png_reads_as_one_slice_grey_volume(tmp_path, hippocampus):
    image, _ = hippocampus("001")
    plane = image.array[32].astype(float)
    grey = np.clip(plane / plane.max() * 255, 0, 255).astype(np.uint8)
    rgb = np.stack([grey, grey, grey], axis=-1)
    path = tmp_path / "slice.png"
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(path))
    volume = read_volume(path)
    assert volume.geometry.size == (64, 64, 1)
    np.testing.assert_allclose(volume.array[0], grey, atol=1)


def test_dicom_series_folder_reads_with_geometry(tmp_path, hippocampus):
    image, _ = hippocampus("004")
    source = sitk.Cast(image.to_sitk(), sitk.sitkInt16)
    source.SetSpacing((0.9, 0.9, 2.0))
    source.SetOrigin((-10.0, 5.0, 30.0))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1.12345"
    for k in range(source.GetDepth()):
        plane = source[:, :, k]
        position = source.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in {
            "0008|0060": "MR",
            "0020|000e": series,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.4f}" for v in position),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": "2.0",
            "0028|0030": "0.9\\0.9",
        }.items():
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(tmp_path / f"slice{k:03d}.dcm"))
        writer.Execute(plane)
    volume = read_volume(tmp_path)
    assert volume.geometry.size == (64, 64, 64)
    np.testing.assert_allclose(volume.geometry.spacing, (0.9, 0.9, 2.0), atol=1e-3)
    np.testing.assert_allclose(volume.geometry.origin, (-10.0, 5.0, 30.0), atol=1e-3)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(source))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(PromptRegisterError, match="Image not found"):
        read_volume(tmp_path / "nope.nii.gz")


def test_4d_image_is_refused(tmp_path):
    path = tmp_path / "four.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([sitk.Image([4, 4, 4], sitk.sitkFloat32)] * 3), str(path))
    with pytest.raises(PromptRegisterError, match="4D image with 3 volumes"):
        read_volume(path)


def test_nan_intensities_are_refused(tmp_path):
    array = np.ones((4, 5, 6), np.float32)
    array[1, 2, 3] = np.nan
    path = tmp_path / "nan.nrrd"  # SimpleITK writes NaN as 0 in NIfTI
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    with pytest.raises(PromptRegisterError, match="1 NaN or infinite"):
        read_volume(path)


def test_huge_volume_is_refused_with_advice(hippocampus_paths):
    with pytest.raises(PromptRegisterError, match="Crop it"):
        read_volume(hippocampus_paths("001")[0], max_voxels=1000)


def test_non_integer_label_map_is_refused(tmp_path):
    path = tmp_path / "soft.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((3, 3, 3), 0.5, np.float32)), str(path))
    with pytest.raises(PromptRegisterError, match="non-integer"):
        read_label_map(path)


def test_unwritable_output_is_a_clear_error_and_writes_nothing(tmp_path, hippocampus):
    image, _ = hippocampus("001")
    with pytest.raises(PromptRegisterError, match="does not exist"):
        write_volume(image, tmp_path / "missing-folder" / "out.nii.gz")
    (tmp_path / "adir.nii.gz").mkdir()
    with pytest.raises(PromptRegisterError, match="is a folder"):
        write_volume(image, tmp_path / "adir.nii.gz")


def test_failed_write_leaves_no_partial_file(tmp_path):
    out = tmp_path / "linear.nii.gz"
    with pytest.raises(PromptRegisterError, match="only hold a displacement field"):
        write_transform(sitk.AffineTransform(3), out)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_survives_a_failed_overwrite(tmp_path):
    out = tmp_path / "field.nii.gz"
    geometry = Geometry.create((4, 5, 6))
    write_transform(displacement_field_transform(np.ones(geometry.shape + (3,)), geometry), out)
    before = out.read_bytes()
    with pytest.raises(PromptRegisterError):
        write_transform(sitk.AffineTransform(3), out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["field.nii.gz"]


@pytest.mark.parametrize("suffix", [".h5", ".nii.gz", ".tfm"])
def test_displacement_field_round_trips_through_files(tmp_path, suffix):
    rng = np.random.default_rng(0)
    geometry = Geometry.create((6, 5, 4), (1.0, 2.0, 3.0), (5.0, -2.0, 1.0), rotation_matrix([0, 0, 1], 20))
    field = rng.normal(size=geometry.shape + (3,))
    path = write_transform(displacement_field_transform(field, geometry), tmp_path / f"t{suffix}")
    loaded = read_transform(path)
    for index in [(0, 0, 0), (3, 2, 1), (5, 4, 3)]:
        point = geometry.index_to_physical(np.array(index, float))
        expected = point + field[index[2], index[1], index[0]]
        np.testing.assert_allclose(loaded.TransformPoint(tuple(point)), expected, atol=1e-5)


def test_volume_round_trip_keeps_geometry(tmp_path):
    geometry = Geometry.create((7, 8, 9), (0.5, 0.75, 3.0), (1.0, 2.0, 3.0), rotation_matrix([1, 0, 1], 30))
    volume = Volume(np.arange(np.prod(geometry.shape), dtype=np.float32).reshape(geometry.shape), geometry)
    loaded = read_volume(write_volume(volume, tmp_path / "v.nrrd"))
    assert loaded.geometry.is_close(geometry, 1e-4)
    np.testing.assert_array_equal(loaded.array, volume.array)
