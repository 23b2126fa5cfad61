"""2D slices of a volume for 2D models, and the exact way back to 3D.

Slices are taken along the through-plane axis (largest spacing; ties go to the
index axis closest to LPS S) and resampled in-plane to square pixels whose
size is the smaller in-plane spacing. Pixel (row, col) of a slice maps to a
continuous voxel index, so masks and points travel back to 3D exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from scipy import ndimage

from .errors import PromptRegisterError
from .geometry import Geometry


def through_plane_axis(geometry: Geometry) -> int:
    """Index axis (0 = i, 1 = j, 2 = k) to slice along: the largest spacing.

    Ties (within 1 %) are broken by the axis whose direction is closest to LPS S.
    """
    spacing = np.asarray(geometry.spacing)
    candidates = [a for a in range(3) if spacing[a] >= spacing.max() * 0.99 and geometry.size[a] > 0]
    superior = np.abs(geometry.direction_matrix[2, :])
    return max(candidates, key=lambda a: (superior[a], -a))


@dataclass(frozen=True)
class SliceFrame:
    """How the slices of one volume map to and from its voxel grid.

    Attributes:
        axis: through-plane index axis (0 = i, 1 = j, 2 = k).
        row_axis, col_axis: index axes shown as slice rows and columns.
        shape: (rows, cols) of every resampled slice.
        pixel_mm: side of the square pixels in mm.
    """

    geometry: Geometry
    axis: int
    row_axis: int
    col_axis: int
    shape: Tuple[int, int]
    pixel_mm: float

    @classmethod
    def for_geometry(cls, geometry: Geometry, axis: Optional[int] = None) -> "SliceFrame":
        axis = through_plane_axis(geometry) if axis is None else axis
        if axis not in (0, 1, 2):
            raise PromptRegisterError(f"Slice axis must be 0, 1 or 2 (i, j, k); got {axis}.")
        # Rows follow the slower in-plane numpy axis, so axial slices look like array[k].
        col_axis, row_axis = [a for a in range(3) if a != axis]
        pixel = min(geometry.spacing[row_axis], geometry.spacing[col_axis])
        rows = max(1, int(round(geometry.size[row_axis] * geometry.spacing[row_axis] / pixel)))
        cols = max(1, int(round(geometry.size[col_axis] * geometry.spacing[col_axis] / pixel)))
        return cls(geometry, axis, row_axis, col_axis, (rows, cols), pixel)

    @property
    def num_slices(self) -> int:
        return self.geometry.size[self.axis]

    def _scale(self, axis: int, pixels: int) -> float:
        """Voxels per pixel along one in-plane axis (voxel count / pixel count)."""
        return self.geometry.size[axis] / pixels

    def pixel_to_index(self, slice_index: float, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Continuous (i, j, k) voxel index of pixel centres (row, col) on a slice, shape (..., 3)."""
        rows = np.asarray(rows, dtype=float)
        cols = np.asarray(cols, dtype=float)
        index = np.zeros(np.broadcast(rows, cols).shape + (3,))
        index[..., self.axis] = slice_index
        index[..., self.row_axis] = (rows + 0.5) * self._scale(self.row_axis, self.shape[0]) - 0.5
        index[..., self.col_axis] = (cols + 0.5) * self._scale(self.col_axis, self.shape[1]) - 0.5
        return index

    def index_to_pixel(self, index: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(slice, row, col) continuous coordinates of continuous voxel indices (..., 3)."""
        index = np.asarray(index, dtype=float)
        rows = (index[..., self.row_axis] + 0.5) / self._scale(self.row_axis, self.shape[0]) - 0.5
        cols = (index[..., self.col_axis] + 0.5) / self._scale(self.col_axis, self.shape[1]) - 0.5
        return index[..., self.axis], rows, cols

    def pixel_to_physical(self, slice_index: float, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """LPS mm of pixel centres (row, col) on a slice."""
        return self.geometry.index_to_physical(self.pixel_to_index(slice_index, rows, cols))

    def physical_to_pixel(self, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(slice, row, col) continuous coordinates of LPS points."""
        return self.index_to_pixel(self.geometry.physical_to_index(points))

    def extract(self, array: np.ndarray, slice_index: int, order: int = 1) -> np.ndarray:
        """Resample slice `slice_index` of a (k, j, i) array to square pixels, shape self.shape."""
        if not 0 <= slice_index < self.num_slices:
            raise PromptRegisterError(f"Slice {slice_index} is outside the volume (0..{self.num_slices - 1}).")
        plane = np.take(array, slice_index, axis=2 - self.axis)  # numpy axes are reversed
        # After removing the slice axis, numpy keeps (row_axis, col_axis) in reverse index order.
        if plane.shape == self.shape:
            return plane.copy()
        rows, cols = np.meshgrid(np.arange(self.shape[0]), np.arange(self.shape[1]), indexing="ij")
        index = self.pixel_to_index(slice_index, rows, cols)
        coords = np.stack([index[..., self.row_axis], index[..., self.col_axis]])
        return ndimage.map_coordinates(plane, coords, order=order, mode="nearest")

    def mask_to_volume(self, mask: np.ndarray, slice_index: int) -> np.ndarray:
        """Put a 2D slice mask back on the voxel grid: a boolean (k, j, i) array, one slice set."""
        if mask.shape != self.shape:
            raise PromptRegisterError(f"Mask shape {mask.shape} does not match the slice shape {self.shape}.")
        volume = np.zeros(self.geometry.shape, dtype=bool)
        n_row, n_col = self.geometry.size[self.row_axis], self.geometry.size[self.col_axis]
        j, i = np.meshgrid(np.arange(n_row), np.arange(n_col), indexing="ij")
        index = np.zeros(j.shape + (3,))
        index[..., self.row_axis] = j
        index[..., self.col_axis] = i
        _, rows, cols = self.index_to_pixel(index)
        rows = np.clip(np.floor(rows + 0.5).astype(int), 0, self.shape[0] - 1)
        cols = np.clip(np.floor(cols + 0.5).astype(int), 0, self.shape[1] - 1)
        plane = mask[rows, cols]
        selector = [slice(None)] * 3
        selector[2 - self.axis] = slice_index
        volume[tuple(selector)] = plane
        return volume
