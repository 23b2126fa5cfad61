"""Where each embedding cell sits on the slice.

SAM resizes a slice so that its long side is 1024 px, pads the short side with
zeros at the bottom/right, and encodes the padded square into a 64 x 64 grid of
16 px cells. A cell beyond the resized image describes padding, not anatomy, so
a prototype (mask-averaged embedding) must weight each cell by how much of the
*mask* it covers in the model's input frame and ignore the padding entirely.
`EmbeddingGrid` holds that geometry and computes those weights exactly with
separable overlap matrices (no resampling of the mask, no axis bias).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np


@dataclass(frozen=True)
class EmbeddingGrid:
    """Geometry linking slice pixels, the model input and the embedding grid.

    Attributes:
        image_size: slice size (H, W) in pixels.
        input_size: size (h, w) of the resized slice inside the model input,
            before padding (SAM: long side = model_size; MedSAM: the full square).
        model_size: side of the square model input in pixels (SAM: 1024).
        shape: embedding grid shape (rows, cols) (SAM: 64 x 64).
    """

    image_size: Tuple[int, int]
    input_size: Tuple[int, int]
    model_size: int
    shape: Tuple[int, int]

    @classmethod
    def longest_side(cls, image_size: Tuple[int, int], model_size: int, shape: Tuple[int, int]) -> "EmbeddingGrid":
        """SAM's ResizeLongestSide: long side -> model_size, rounded like segment-anything."""
        h, w = int(image_size[0]), int(image_size[1])
        scale = model_size * 1.0 / max(h, w)
        input_size = (int(h * scale + 0.5), int(w * scale + 0.5))
        return cls((h, w), input_size, int(model_size), (int(shape[0]), int(shape[1])))

    @classmethod
    def stretched(cls, image_size: Tuple[int, int], model_size: int, shape: Tuple[int, int]) -> "EmbeddingGrid":
        """MedSAM's preprocessing: the slice is stretched to the full square."""
        return cls((int(image_size[0]), int(image_size[1])), (model_size, model_size), int(model_size),
                   (int(shape[0]), int(shape[1])))

    @property
    def scale(self) -> Tuple[float, float]:
        """(row, col) model-input pixels per slice pixel."""
        return (self.input_size[0] / self.image_size[0], self.input_size[1] / self.image_size[1])

    @property
    def cell_size(self) -> Tuple[float, float]:
        """(row, col) size of one embedding cell in model-input pixels."""
        return (self.model_size / self.shape[0], self.model_size / self.shape[1])

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """Slice pixel coordinates (x, y) -> model input coordinates (x, y).

        Pixel centres follow segment-anything: a coordinate is scaled, not
        shifted, so (0, 0) is the slice's top-left corner in both frames.
        """
        xy = np.asarray(xy, dtype=np.float64)
        sy, sx = self.scale
        return xy * np.array([sx, sy])

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        """Model input coordinates (x, y) -> slice pixel coordinates (x, y)."""
        xy = np.asarray(xy, dtype=np.float64)
        sy, sx = self.scale
        return xy / np.array([sx, sy])

    def _overlap(self, axis: int) -> np.ndarray:
        """(cells, pixels) overlap length of slice pixels with cells along one axis, in cell units."""
        pixels = self.image_size[axis]
        cells = self.shape[axis]
        step = self.scale[axis]
        cell = self.cell_size[axis]
        lo = np.arange(pixels) * step
        hi = lo + step
        cell_lo = np.arange(cells)[:, None] * cell
        overlap = np.clip(np.minimum(hi[None, :], cell_lo + cell) - np.maximum(lo[None, :], cell_lo), 0.0, None)
        return overlap / cell

    def coverage(self, mask: np.ndarray) -> np.ndarray:
        """Fraction of each embedding cell covered by a slice mask.

        Arguments:
            mask: (H, W) boolean or [0, 1] float array on the slice.
        Returns:
            (rows, cols) float64 in [0, 1]; cells over padding are exactly 0.
        """
        mask = np.asarray(mask, dtype=np.float64)
        if mask.shape != tuple(self.image_size):
            raise ValueError(f"mask shape {mask.shape} does not match the slice size {self.image_size}")
        return self._overlap(0) @ mask @ self._overlap(1).T

    def valid_cells(self) -> np.ndarray:
        """Fraction of each cell that holds image rather than padding."""
        return self.coverage(np.ones(self.image_size))

    def pool(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mask-weighted mean of a (C, rows, cols) feature grid; zeros for an empty mask."""
        weights = self.coverage(mask)
        total = weights.sum()
        if total <= 0:
            return np.zeros(features.shape[0], dtype=np.float32)
        pooled = np.tensordot(np.asarray(features, dtype=np.float64), weights, axes=([1, 2], [0, 1])) / total
        return pooled.astype(np.float32)
