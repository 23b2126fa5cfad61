"""Where the ROI term of the dense stage looks: the band of points near each fixed ROI's boundary, and the
crop and pooling helpers every level uses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..geometry import Geometry
from ..options.fit import FitOptions


@dataclass
class Band:
    """The points of a level's crop near each fixed ROI's boundary, all pairs concatenated.

    Where the residual displacement is smaller than the band, points deeper
    inside the fixed ROI are covered by the warped moving ROI and points farther
    outside are not, so they add constants to Dice and nothing to the gradient.

    Attributes:
        indices: (N,) flat indices into the level's crop grid, pair after pair.
        sizes: number of points of each pair.
        values: (N,) soft fixed-mask values at the points.
        interior: (K,) fixed mass deeper inside than the band.
        fixed_total: (K,) total fixed mass.
    """

    indices: torch.Tensor
    sizes: List[int]
    values: torch.Tensor
    interior: torch.Tensor
    fixed_total: torch.Tensor

    @classmethod
    def build(cls, fixed_masks: torch.Tensor, level_mm: Sequence[float], width_mm: float) -> "Band":
        masks = fixed_masks.detach().cpu().numpy()
        sampling = tuple(level_mm[::-1])
        chosen, interior = [], []
        for mask in masks:
            inside = mask > 0.5
            depth = ndimage.distance_transform_edt(inside, sampling=sampling)
            distance = ndimage.distance_transform_edt(~inside, sampling=sampling)
            band = np.where(inside, depth <= width_mm, distance <= width_mm) | ((mask > 0) & ~inside)
            chosen.append(np.flatnonzero(band))
            interior.append(float(mask[inside & ~band].sum()))
        flat = masks.reshape(len(masks), -1)
        values = np.concatenate([row[c] for row, c in zip(flat, chosen)])
        dtype = fixed_masks.dtype
        return cls(
            torch.as_tensor(np.concatenate(chosen)),
            [len(c) for c in chosen],
            torch.as_tensor(values, dtype=dtype),
            torch.as_tensor(interior, dtype=dtype),
            torch.as_tensor(flat.sum(axis=1), dtype=dtype),
        )

    def to(self, device: torch.device) -> "Band":
        return Band(self.indices.to(device), self.sizes, self.values.to(device), self.interior.to(device), self.fixed_total.to(device))


def converged(history: List[float], options: FitOptions) -> bool:
    window = options.window
    if len(history) < max(options.min_iterations, 2 * window) or len(history) % window:
        return False
    previous = float(np.mean(history[-2 * window : -window]))
    latest = float(np.mean(history[-window:]))
    return (previous - latest) <= options.tolerance * max(abs(previous), 1e-8)


def pool_factor(voxel_mm: float, spacing: float, extent: int) -> int:
    return int(max(1, min(round(voxel_mm / spacing), extent)))


def pool(masks: torch.Tensor, factors_ijk: Sequence[int]) -> torch.Tensor:
    """Average-pool (K, k, j, i) masks by per-axis factors, zero-padding partial blocks."""
    kernel = tuple(int(f) for f in factors_ijk[::-1])
    if kernel == (1, 1, 1):
        return masks
    pad = []
    for size, f in zip(masks.shape[:0:-1], factors_ijk):  # i, j, k order for F.pad
        pad.extend([0, (-size) % f])
    return F.avg_pool3d(F.pad(masks, pad)[None], kernel_size=kernel, stride=kernel)[0]


def bounding_box(mask: np.ndarray, geometry: Geometry, margin_mm: float, pad_voxels: int = 0) -> Tuple[Tuple[int, int], ...]:
    """[lo, hi) index ranges along (i, j, k) around a mask, grown by margin_mm, inside the grid."""
    ranges = []
    for numpy_axis, (size, spacing) in zip((2, 1, 0), zip(geometry.size, geometry.spacing)):
        present = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != numpy_axis)))[0]
        grow = int(math.ceil(margin_mm / spacing)) + pad_voxels
        ranges.append((max(0, int(present[0]) - grow), min(size, int(present[-1]) + 1 + grow)))
    return tuple(ranges)


def smoothing_widths(voxel_mm: float, geometry: Geometry) -> List[int]:
    """Odd box-filter widths (k, j, i voxels) about one level voxel wide: how a level smooths a moving image or
    mask, centred, so that the result depends on its physical content, not on how its axes are ordered."""
    return [2 * int(math.floor((voxel_mm / s - 1) / 2 + 0.5)) + 1 for s in geometry.spacing[::-1]]
