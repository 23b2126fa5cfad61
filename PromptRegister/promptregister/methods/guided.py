"""Prompts guided by an image registration: where the images already say a click lands.

When prompts refine an image registration (RegisterOptions.image_first), that registration is the best guess of
where each moving region lies in the fixed image. It is used three ways:
- the corresponding fixed prompt is searched near the point the registration maps the click to, instead of
  over a blind slab of fixed slices (fewer slices to embed, and no match on a look-alike elsewhere);
- of SAM's candidate masks at that prompt, the one that best overlaps the registration's image of the moving
  region is taken;
- a pair whose fixed region still overlaps that image poorly contradicts the images: its overlap is kept in
  the pair's source ("guide_dice") so that register can leave it out as doubtful.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..dense.result import FitResult
from ..models.base import SliceEmbedding
from .slices import SlicedVolume

SLAB_SLICES = 1.0
"""A moving region drawn on one slice stands for the tissue within this many slices of it when its image in
the fixed volume is computed (the registration's image of a slice is a curved surface, not a slice)."""


@dataclass
class Guide:
    """An image registration's fixed -> moving map, used to place prompts.

    Attributes:
        fit: the image registration's dense result (maps fixed points to moving points).
        radius_mm: the corresponding fixed prompt is searched within this distance of the mapped click.
    """

    fit: FitResult
    radius_mm: float

    def fixed_point(self, moving_lps: Sequence[float]) -> np.ndarray:
        """The fixed LPS point the registration maps onto a moving one."""
        return self.fit.to_fixed(np.asarray(moving_lps, dtype=float)[None])[0]

    def fixed_slices(self, fixed: SlicedVolume, moving_lps: Sequence[float]) -> List[int]:
        """Fixed slices within radius_mm of the mapped click (the nearest slice at least)."""
        slice_position = float(fixed.frame.physical_to_pixel(self.fixed_point(moving_lps)[None])[0][0])
        reach = self.radius_mm / fixed.slice_mm
        low = max(0, int(np.ceil(slice_position - reach - 1e-9)))
        high = min(fixed.num_slices - 1, int(np.floor(slice_position + reach + 1e-9)))
        if high < low:
            return [int(np.clip(round(slice_position), 0, fixed.num_slices - 1))]
        return list(range(low, high + 1))

    def near_cells(self, fixed: SlicedVolume, slice_index: int, embedding: SliceEmbedding,
                   moving_lps: Sequence[float]) -> np.ndarray:
        """(rows, cols) bool over an embedding's cells: those whose centre lies within radius_mm of the mapped
        click."""
        xy = cell_centres(embedding)  # (rows, cols, 2) slice pixels
        points = fixed.frame.pixel_to_physical(slice_index, xy[..., 1] - 0.5, xy[..., 0] - 0.5)
        distance = np.linalg.norm(points - self.fixed_point(moving_lps), axis=-1)
        return distance <= self.radius_mm

    def predicted_mask(self, fixed: SlicedVolume, fixed_slice: int, moving: SlicedVolume, moving_slice: int,
                       moving_mask: np.ndarray) -> np.ndarray:
        """The registration's image of a moving slice region on a fixed slice: the fixed pixels it maps into
        the region (within SLAB_SLICES of its slice). (rows, cols) bool on the fixed slice."""
        rows, cols = fixed.frame.shape
        row_index, col_index = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        points = fixed.frame.pixel_to_physical(fixed_slice, row_index, col_index).reshape(-1, 3)
        slice_at, row_at, col_at = moving.frame.physical_to_pixel(self.fit.to_moving(points))
        moving_rows, moving_cols = moving_mask.shape
        r, c = np.rint(row_at).astype(int), np.rint(col_at).astype(int)
        inside = ((np.abs(slice_at - moving_slice) <= SLAB_SLICES) & (r >= 0) & (r < moving_rows)
                  & (c >= 0) & (c < moving_cols))
        predicted = np.zeros(rows * cols, dtype=bool)
        predicted[inside] = moving_mask[r[inside], c[inside]]
        return predicted.reshape(rows, cols)


def cell_centres(embedding: SliceEmbedding) -> np.ndarray:
    """(rows, cols, 2): the (x, y) slice-pixel position of every embedding cell's centre, kept inside the slice."""
    grid = embedding.grid
    cell_h, cell_w = grid.cell_size
    rows, cols = grid.shape
    col_index, row_index = np.meshgrid(np.arange(cols), np.arange(rows))
    xy = grid.to_image(np.stack([(col_index + 0.5) * cell_w, (row_index + 0.5) * cell_h], axis=-1))
    height, width = grid.image_size
    return np.clip(xy, [0.5, 0.5], [width - 0.5, height - 0.5])


def overlap(first: np.ndarray, second: np.ndarray) -> float:
    """Dice of two masks (0 when both are empty)."""
    total = int(first.sum()) + int(second.sum())
    return 2.0 * int((first & second).sum()) / total if total else 0.0


def closest_candidate(masks: Sequence[np.ndarray], expected: np.ndarray) -> Optional[int]:
    """Index of the non-empty mask that overlaps `expected` most (None when none overlaps it at all)."""
    scores = [(overlap(mask, expected), index) for index, mask in enumerate(masks) if mask.any()]
    best = max(scores, default=(0.0, None))
    return best[1] if best[0] > 0 else None


def pair_overlap(guide: Guide, fixed: SlicedVolume, fixed_slice: int, fixed_mask: np.ndarray, moving: SlicedVolume,
                 moving_slice: int, moving_mask: np.ndarray) -> Tuple[float, np.ndarray]:
    """(Dice of the fixed region with the registration's image of the moving one, that image)."""
    predicted = guide.predicted_mask(fixed, fixed_slice, moving, moving_slice, moving_mask)
    return overlap(fixed_mask, predicted), predicted
