"""A voxel array with its physical geometry, the unit every layer passes around."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .errors import PromptRegisterError
from .geometry import Geometry


@dataclass
class Volume:
    """A 3D scalar image: voxel array (k, j, i) plus its LPS geometry.

    A 2D image is a volume with one slice (size k == 1).
    """

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise PromptRegisterError(f"A volume's array must be 3D (k, j, i); got shape {self.array.shape}.")
        if tuple(self.array.shape) != self.geometry.shape:
            raise PromptRegisterError(
                f"Array shape {self.array.shape} does not match the geometry's (k, j, i) shape {self.geometry.shape}."
            )

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> "Volume":
        """Wrap a 2D or 3D scalar SimpleITK image (2D becomes one slice)."""
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise PromptRegisterError(
                f"Expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components per voxel."
            )
        if image.GetDimension() == 2:
            image = sitk.JoinSeries(image)
        if image.GetDimension() != 3:
            raise PromptRegisterError(f"Expected a 2D or 3D image, got {image.GetDimension()}D.")
        geometry = Geometry.create(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())
        return cls(sitk.GetArrayFromImage(image), geometry)

    def to_sitk(self) -> sitk.Image:
        """A SimpleITK image with the same voxels and geometry."""
        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        return set_sitk_geometry(image, self.geometry)

    def with_array(self, array: np.ndarray) -> "Volume":
        """Same geometry, other voxels (e.g. a mask or a warped image)."""
        return Volume(array, self.geometry)


def set_sitk_geometry(image: sitk.Image, geometry: Geometry) -> sitk.Image:
    """Copy spacing, origin and direction onto a SimpleITK image, in place."""
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image
