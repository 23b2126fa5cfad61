"""Read any SimpleITK-readable image as a Volume; write volumes and label maps atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from ..errors import PromptRegisterError
from ..volume import Volume
from .atomic import atomic_output, check_writable, full_suffix
from .write_errors import no_space_error, quiet_native_errors
from .nifti_check import check_nifti, is_nifti

#: Refuse volumes larger than this many voxels (about 1.2 GB as float32);
#: a user can crop or downsample, or raise the limit explicitly.
DEFAULT_MAX_VOXELS = 300_000_000

#: Voxel spacings outside this range (mm) come from headers in the wrong units (metres, micrometres) or broken
#: ones; the grids and lengths in mm that registration builds from them would be absurd (a 1e-9 mm spacing ran
#: out of memory).
SPACING_RANGE_MM = (1e-3, 100.0)

_RGB_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def read_volume(
    path: str | os.PathLike,
    *,
    series_id: Optional[str] = None,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    allow_nan: bool = False,
) -> Volume:
    """Read an image file or a DICOM series folder as a 3D Volume in LPS.

    Arguments:
        path: NIfTI, NRRD, MHA, ... file; a folder holding one DICOM series; or a
            PNG/JPEG (read as a one-slice volume, colour converted to grey).
        series_id: which DICOM series to read when the folder holds several.
        max_voxels: refuse larger volumes with a message saying what to do.
        allow_nan: keep NaN/inf voxels instead of refusing the image.

    Returns:
        The volume with its voxel array (k, j, i) and geometry.
    """
    path = Path(path)
    if not path.exists():
        raise PromptRegisterError(f"Image not found: {path}. Check the path (relative paths start from {Path.cwd()}).")
    if path.is_file() and is_nifti(path):
        check_nifti(path, allow_nan)  # ITK reads cut-off data, NaN and zero spacing in NIfTI files without a word
    image = _read_dicom_folder(path, series_id) if path.is_dir() else _read_file(path)
    image = _to_scalar_3d(image, path)
    size = image.GetSize()
    if int(np.prod(size)) > max_voxels:
        raise PromptRegisterError(
            f"{path} has {int(np.prod(size)):,} voxels (size {size}), more than the limit of {max_voxels:,}. "
            "Crop it to the region of interest or downsample it first."
        )
    _check_spacing(image.GetSpacing(), path)
    volume = Volume.from_sitk(image)
    if not allow_nan and np.issubdtype(volume.array.dtype, np.floating) and not np.isfinite(volume.array).all():
        bad = int((~np.isfinite(volume.array)).sum())
        raise PromptRegisterError(
            f"{path} contains {bad:,} NaN or infinite voxel values. Replace them (e.g. with 0) before registering."
        )
    return volume


LABEL_TOLERANCE = 1e-3
"""How far from an integer a label stored as floating point may be (rounding in a float export)."""


def read_label_map(path: str | os.PathLike, **kwargs) -> Volume:
    """Read a label map: integer labels >= 0 (0 = background), returned as int32."""
    volume = read_volume(path, **kwargs)
    values = volume.array
    if np.issubdtype(values.dtype, np.floating):
        if not np.isfinite(values).all():
            raise PromptRegisterError(
                f"{path} is not a label map: it holds NaN or infinite values. Pass a segmentation with integer "
                "labels (0 = background).")
        fraction = np.abs(values - np.round(values))
        if fraction.max(initial=0.0) > LABEL_TOLERANCE:
            example = values.flat[int(np.argmax(fraction))]
            raise PromptRegisterError(
                f"{path} is not a label map: it holds non-integer values (such as {example:g}); is it an image? "
                "Pass a segmentation with integer labels (0 = background).")
        values = np.round(values)
    if values.min() < 0:
        raise PromptRegisterError(f"{path} holds negative label values ({values.min():g}); labels must be >= 0.")
    return volume.with_array(values.astype(np.int32))


def write_volume(volume: Volume, path: str | os.PathLike, *, compress: bool = True) -> Path:
    """Write a volume (any format SimpleITK knows by suffix) atomically."""
    with quiet_native_errors(), atomic_output(path) as temporary:
        sitk.WriteImage(volume.to_sitk(), str(temporary), compress)
        if is_nifti(temporary):
            _check_written(temporary, Path(path))
    return Path(path)


def _check_written(temporary: Path, target: Path) -> None:
    """ITK's NIfTI writer leaves a short file and no error when the disk fills up (it prints "NWAD: wrote only
    ... bytes"), so the file is read back through the header check before it is renamed into place."""
    try:
        check_nifti(temporary, allow_nan=True)
    except PromptRegisterError:
        folder = target.parent if str(target.parent) else Path(".")
        raise (no_space_error(folder, RuntimeError("short write"))
               or PromptRegisterError(f"Writing {target} failed: the file came out incomplete. Check the disk and "
                                      "try again.")) from None


def check_image_output(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output path SimpleITK cannot write a 3D image to (its folder, or a suffix such
    as .xyz that names no image format): a tiny image is written with the same suffix in a temporary folder."""
    path = Path(path)
    check_writable(path)
    suffix = full_suffix(path)
    with tempfile.TemporaryDirectory() as folder, quiet_native_errors():
        try:
            sitk.WriteImage(sitk.Image([2, 2, 2], sitk.sitkFloat32), str(Path(folder) / f"probe{suffix}"))
        except RuntimeError:
            raise PromptRegisterError(
                f"Cannot write {path}: {suffix or 'a name without a suffix'} is not an image format SimpleITK "
                "writes. Use .nii.gz (recommended), .nrrd or .mha.") from None
    return path


def write_label_map(labels: Volume, path: str | os.PathLike) -> Path:
    """Write an integer label map atomically (as uint16 when it fits, else int32)."""
    array = labels.array
    dtype = np.uint16 if array.size == 0 or (array.min() >= 0 and array.max() < 65536) else np.int32
    return write_volume(labels.with_array(array.astype(dtype)), path)


def _check_spacing(spacing, path: Path) -> None:
    low, high = SPACING_RANGE_MM
    for axis, value in zip("xyz", spacing):
        if not (low <= value <= high):
            raise PromptRegisterError(
                f"{path} has a voxel spacing of {value:g} mm along {axis}, outside {low:g}-{high:g} mm, which no "
                "scan has: the header's units are probably wrong (metres or micrometres?). Fix the spacing in the "
                "header and try again.")


def _read_file(path: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise PromptRegisterError(
            f"Cannot read {path} as an image ({_first_line(error)}). Supported: NIfTI, NRRD, MHA/MHD, "
            "DICOM series folders, PNG/JPEG and other formats SimpleITK reads."
        ) from None


def _read_dicom_folder(folder: Path, series_id: Optional[str]) -> sitk.Image:
    series = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or [])
    if not series:
        raise PromptRegisterError(f"{folder} is a folder but holds no DICOM series. Pass an image file or a DICOM folder.")
    if series_id is None:
        if len(series) > 1:
            raise PromptRegisterError(
                f"{folder} holds {len(series)} DICOM series ({', '.join(series)}); choose one with series_id."
            )
        series_id = series[0]
    elif series_id not in series:
        raise PromptRegisterError(f"DICOM series {series_id} is not in {folder}; it holds {', '.join(series)}.")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_id))
    return reader.Execute()


def _to_scalar_3d(image: sitk.Image, path: Path) -> sitk.Image:
    """Accept 2D/3D scalar images, colour 2D pictures and 4D images with one volume."""
    if image.GetDimension() == 4:
        if image.GetSize()[3] != 1:
            raise PromptRegisterError(
                f"{path} is a 4D image with {image.GetSize()[3]} volumes (a time series or multi-channel image). "
                "Registration takes one 3D volume: extract the volume or channel you want first."
            )
        image = image[:, :, :, 0]
    if image.GetDimension() not in (2, 3):
        raise PromptRegisterError(f"{path} is {image.GetDimension()}D; PromptRegister reads 2D and 3D images.")
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1:
        if components in (3, 4) and (image.GetDimension() == 2 or path.suffix.lower() in _RGB_SUFFIXES):
            rgb = sitk.GetArrayFromImage(image)[..., :3].astype(np.float32)
            grey = sitk.GetImageFromArray(rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
            grey.CopyInformation(image)
            image = grey
        else:
            raise PromptRegisterError(
                f"{path} has {components} values per voxel (a vector or colour volume); pass a scalar image."
            )
    return image


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith(("sitk::", "Exception thrown"))]
    return (meaningful or lines or ["unknown error"])[-1][:200]
