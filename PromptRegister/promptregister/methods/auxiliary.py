"""Auxiliary prompts (PromptReg paper, Sec. 3.1, Eq. 2): refine the fixed ROI
when its shape disagrees with the moving ROI's.

The two ROIs live on unregistered slices, so their contours are compared in
millimetres after moving the moving contour's centroid onto the fixed one.
The two directed Hausdorff distances say which side is wrong: a fixed contour
point far from every moving contour point is fixed ROI that should not be
there (a negative point there); a moving contour point far from every fixed
contour point is anatomy the fixed ROI misses (a positive point there, stepped
a little toward the fixed contour). When the two distances differ by less than
sigma, the shapes agree and no prompt is added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class AuxiliaryPrompt:
    """A point (x, y) in fixed-slice pixels and its label (1 positive, 0 negative), with the distances."""

    xy: np.ndarray
    label: int
    moving_to_fixed_mm: float
    fixed_to_moving_mm: float


def contour_points(mask: np.ndarray) -> np.ndarray:
    """(n, 2) (x, y) pixel centres on the boundary of a 2D mask (mask pixels with a background 4-neighbour)."""
    mask = np.asarray(mask, dtype=bool)
    inner = ndimage.binary_erosion(mask, border_value=0)
    rows, cols = np.nonzero(mask & ~inner)
    return np.stack([cols + 0.5, rows + 0.5], axis=1).astype(np.float64)


def auxiliary_prompt(moving_mask: np.ndarray, fixed_mask: np.ndarray, moving_pixel_mm: float,
                     fixed_pixel_mm: float, sigma_mm: float, step_px: float) -> Optional[AuxiliaryPrompt]:
    """The next auxiliary prompt on the fixed slice, or None when the contours agree within sigma_mm."""
    moving_contour = contour_points(moving_mask) * moving_pixel_mm
    fixed_contour = contour_points(fixed_mask) * fixed_pixel_mm
    if len(moving_contour) == 0 or len(fixed_contour) == 0:
        return None
    moving_centre = _centroid(moving_mask) * moving_pixel_mm
    fixed_centre = _centroid(fixed_mask) * fixed_pixel_mm
    aligned = moving_contour - moving_centre + fixed_centre  # moving contour in the fixed slice's mm frame
    to_fixed, nearest_fixed = cKDTree(fixed_contour).query(aligned)
    to_moving, _ = cKDTree(aligned).query(fixed_contour)
    moving_to_fixed = float(to_fixed.max())
    fixed_to_moving = float(to_moving.max())
    if abs(moving_to_fixed - fixed_to_moving) <= sigma_mm:
        return None
    if fixed_to_moving > moving_to_fixed:
        worst = fixed_contour[int(np.argmax(to_moving))]
        return AuxiliaryPrompt(worst / fixed_pixel_mm, 0, moving_to_fixed, fixed_to_moving)
    index = int(np.argmax(to_fixed))
    worst, target = aligned[index], fixed_contour[nearest_fixed[index]]
    direction = target - worst
    length = float(np.linalg.norm(direction))
    step = direction / length * step_px * fixed_pixel_mm if length > 0 else 0.0
    point = (worst + step) / fixed_pixel_mm
    height, width = fixed_mask.shape
    point = np.clip(point, [0.0, 0.0], [width, height])
    return AuxiliaryPrompt(point, 1, moving_to_fixed, fixed_to_moving)


def _centroid(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean() + 0.5, rows.mean() + 0.5])
