"""Resample a moving volume onto a reference grid through a fixed -> moving transform."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .geometry import Geometry
from .volume import Volume


def warp_volume(moving: Volume, transform: sitk.Transform, reference: Geometry, *, labels: bool = False, default: float = 0.0) -> Volume:
    """Moving voxels seen from the reference grid: out(p) = moving(T(p)).

    Arguments:
        transform: maps reference (fixed) points to moving points (ITK resampling convention).
        labels: nearest-neighbour interpolation and integer output, for label maps.
        default: value for points that map outside the moving image.
    """
    reference_image = sitk.Image(list(reference.size), sitk.sitkUInt8)
    reference_image.SetSpacing(reference.spacing)
    reference_image.SetOrigin(reference.origin)
    reference_image.SetDirection(reference.direction)
    source = moving.to_sitk()
    if not labels and source.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        source = sitk.Cast(source, sitk.sitkFloat32)
    interpolator = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    warped = sitk.Resample(source, reference_image, transform, interpolator, default)
    array = sitk.GetArrayFromImage(warped)
    return Volume(array.astype(np.int32) if labels else array, reference)
