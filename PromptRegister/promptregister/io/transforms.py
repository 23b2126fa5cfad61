"""ITK transforms: displacement fields on a grid, reading and atomic writing.

A displacement-field transform here always maps a fixed (reference) point p
to the moving point p + u(p): ITK's resampling convention, which Slicer loads
as a grid transform's FromParent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import PromptRegisterError
from ..geometry import Geometry
from ..volume import set_sitk_geometry
from .atomic import atomic_output, check_writable
from .write_errors import quiet_native_errors

TRANSFORM_SUFFIXES = (".h5", ".hdf5", ".tfm", ".txt", ".mat", ".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
_FIELD_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


def displacement_field_transform(field: np.ndarray, geometry: Geometry) -> sitk.DisplacementFieldTransform:
    """Wrap a field of LPS displacement vectors (k, j, i, 3) in mm as an ITK transform."""
    if field.shape != geometry.shape + (3,):
        raise PromptRegisterError(f"Field shape {field.shape} does not match the grid {geometry.shape} + (3,).")
    image = sitk.GetImageFromArray(np.ascontiguousarray(field, dtype=np.float64), isVector=True)
    set_sitk_geometry(image, geometry)
    return sitk.DisplacementFieldTransform(image)


def field_image(transform: sitk.DisplacementFieldTransform) -> sitk.Image:
    """The displacement vector image held by a displacement-field transform."""
    return sitk.DisplacementFieldTransform(transform).GetDisplacementField()


def transform_to_field(transform: sitk.Transform, geometry: Geometry) -> np.ndarray:
    """Sample any transform on a grid as displacements T(p) - p, shape (k, j, i, 3)."""
    converter = sitk.TransformToDisplacementFieldFilter()
    converter.SetOutputPixelType(sitk.sitkVectorFloat64)
    converter.SetSize(geometry.size)
    converter.SetOutputSpacing(geometry.spacing)
    converter.SetOutputOrigin(geometry.origin)
    converter.SetOutputDirection(geometry.direction)
    return sitk.GetArrayFromImage(converter.Execute(transform))


def check_transform_output(path: str | os.PathLike, displacement_field: bool = True) -> Path:
    """Refuse, before any work, a transform path whose format cannot be told from its suffix or cannot hold
    the transform (a linear one in an image format), or whose folder cannot be written."""
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(TRANSFORM_SUFFIXES):
        raise PromptRegisterError(
            f"Cannot tell the transform format from {path.name}; use .h5 (recommended), .tfm, or .nii.gz.")
    if not displacement_field and name.endswith(_FIELD_IMAGE_SUFFIXES):
        raise PromptRegisterError(f"{path.name} is an image format, which can only hold a displacement field; "
                                  "write linear transforms as .h5 or .tfm.")
    check_writable(path)
    return path


def write_transform(transform: sitk.Transform, path: str | os.PathLike) -> Path:
    """Write an ITK transform atomically.

    .h5/.tfm/.txt/.mat write the ITK transform file; .nii.gz/.nrrd/.mha write a
    displacement field as a vector image (displacement-field transforms only).
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(TRANSFORM_SUFFIXES):
        raise PromptRegisterError(
            f"Cannot tell the transform format from {path.name}; use .h5 (recommended), .tfm, or .nii.gz."
        )
    with quiet_native_errors(), atomic_output(path) as temporary:
        if name.endswith(_FIELD_IMAGE_SUFFIXES):
            if not isinstance(transform, sitk.DisplacementFieldTransform):
                raise PromptRegisterError(
                    f"{path.name} is an image format, which can only hold a displacement field; "
                    "write linear transforms as .h5 or .tfm."
                )
            sitk.WriteImage(field_image(transform), str(temporary))
        else:
            sitk.WriteTransform(transform, str(temporary))
    return path


def read_transform(path: str | os.PathLike) -> sitk.Transform:
    """Read an ITK transform file, or a displacement field stored as a vector image."""
    path = Path(path)
    if not path.exists():
        raise PromptRegisterError(f"Transform not found: {path}.")
    try:
        if path.name.lower().endswith(_FIELD_IMAGE_SUFFIXES):
            image = sitk.ReadImage(str(path), sitk.sitkVectorFloat64)
            if image.GetNumberOfComponentsPerPixel() != 3 or image.GetDimension() != 3:
                raise PromptRegisterError(f"{path} is not a 3D displacement field (3 components per voxel).")
            return sitk.DisplacementFieldTransform(image)
        transform = sitk.ReadTransform(str(path))
    except RuntimeError as error:
        raise PromptRegisterError(f"Cannot read {path} as an ITK transform: {str(error).strip().splitlines()[-1][:200]}") from None
    return _unwrap(transform)


def _unwrap(transform: sitk.Transform) -> sitk.Transform:
    """Return the concrete transform class (ReadTransform gives a generic/composite one)."""
    if isinstance(transform, sitk.CompositeTransform) and transform.GetNumberOfTransforms() == 1:
        transform = transform.GetNthTransform(0)
    try:
        return transform.Downcast()
    except AttributeError:
        return transform
