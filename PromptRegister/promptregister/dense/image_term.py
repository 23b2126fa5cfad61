"""The image term of the dense stage: local normalised cross-correlation (LNCC) of the fixed image and the
moving image warped by the current transform.

The ROI pairs constrain the field only where they are. Where they are sparse, or wrong, the images
themselves must have a say: this term adds 1 - mean LNCC (squared local correlation, as ANTs' CC metric)
over the fixed image, or over a region around the ROIs, at each resolution level. LNCC is for images of
the same modality (MR to MR, CT to CT); between modalities (MR to ultrasound, CT to MR) the term compares
MIND-SSC descriptors instead (mind.py). The SAMReg and Tell2Reg papers fit the ROI pairs alone, which
stays available as the "paper" preset (image weight 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..geometry import Geometry
from ..volume import Volume
from .band import smoothing_widths
from .bspline import BSplineGrid
from .linear import LinearFit
from .mind import mind_loss, mind_ssc

Projection = Callable[[torch.Tensor], torch.Tensor]


def normalised_intensities(volume: Volume) -> np.ndarray:
    """Intensities mapped so that the 1st and 99th percentiles become 0 and 1 (float32), so that the LNCC
    epsilon means the same for every image."""
    values = np.asarray(volume.array, dtype=np.float32)
    low, high = np.percentile(values, [1.0, 99.0])
    scale = float(high - low) if high > low else 1.0
    return np.clip((values - low) / scale, -0.5, 1.5).astype(np.float32)


def lncc_loss(fixed: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor, window: int,
              epsilon: float = 1e-4) -> torch.Tensor:
    """1 - the mask-weighted mean of the squared local correlation in cubic windows of `window` voxels.

    fixed, warped, mask: (1, 1, k, j, i). A window sees only what is inside the image (no zero padding
    counted): local means use count_include_pad=False.
    """
    def local_mean(values: torch.Tensor) -> torch.Tensor:
        return box_mean(values, window)

    mean_f, mean_w = local_mean(fixed), local_mean(warped)
    cross = local_mean(fixed * warped) - mean_f * mean_w
    var_f = (local_mean(fixed * fixed) - mean_f ** 2).clamp_min(0.0)
    var_w = (local_mean(warped * warped) - mean_w ** 2).clamp_min(0.0)
    correlation = cross * cross / (var_f * var_w + epsilon)
    return 1.0 - (correlation * mask).sum() / mask.sum().clamp_min(1.0)


def box_mean(values: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over a cubic window of `window` voxels around each voxel of (1, C, k, j, i); a window past the
    image edge averages only the voxels inside it.

    Three 1D passes, each a running sum (cumulative sum, then the difference of two shifted copies): the cost
    per voxel does not depend on the window, and the backward pass is as cheap. avg_pool3d, used before, was
    about half of a full-resolution fit's time (forward and backward, 15 calls an iteration).
    """
    for dim in (2, 3, 4):
        values = _running_mean(values, dim, window)
    return values


def _running_mean(values: torch.Tensor, dim: int, window: int) -> torch.Tensor:
    size = values.shape[dim]
    if size <= 1:
        return values
    half = window // 2
    padding = [0, 0] * (values.dim() - 1 - dim) + [half + 1, half]  # F.pad lists the last axis first
    running = torch.cumsum(F.pad(values, padding), dim=dim)
    sums = running.narrow(dim, window, size) - running.narrow(dim, 0, size)
    index = torch.arange(size, device=values.device)
    counts = (torch.clamp(index + half, max=size - 1) - torch.clamp(index - half, min=0) + 1).to(values.dtype)
    shape = [1] * values.dim()
    shape[dim] = size
    return sums / counts.reshape(shape)


@dataclass
class ImageLevel:
    """What one resolution level needs to evaluate the image term."""

    fixed: torch.Tensor          # (1, C, k, j, i) pooled fixed intensities (C = 1) or MIND descriptors (C = 12)
    mask: torch.Tensor           # (1, 1, k, j, i) where the term counts
    moving: torch.Tensor         # (1, C, K, J, I) moving intensities smoothed to the level, or their descriptors
    base: torch.Tensor           # (k * j * i, 3) the linear part of T, in grid_sample coordinates
    weights: Tuple[torch.Tensor, ...]  # B-spline weights at the level's voxel positions
    to_normalised: torch.Tensor  # (3, 3): LPS mm -> grid_sample coordinates, transposed
    level_mm: Tuple[float, float, float]
    direction_inverse: torch.Tensor  # (3, 3): inverse of the level grid's index -> LPS matrix
    window: int
    metric: str = "lncc"

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.fixed.shape[2:])  # type: ignore[return-value]

    def displacement(self, parameters: torch.Tensor, project: Projection) -> torch.Tensor:
        """The B-spline part of the field, (3, k, j, i) mm, on the level's grid."""
        return project(BSplineGrid.evaluate(parameters, self.weights))

    def loss(self, displacement: torch.Tensor) -> torch.Tensor:
        sample_at = self.base + displacement.reshape(3, -1).T @ self.to_normalised
        grid = sample_at.reshape(*self.shape, 3)[None]
        warped = F.grid_sample(self.moving, grid, mode="bilinear", padding_mode="border", align_corners=True)
        if self.metric == "mind":
            return mind_loss(self.fixed, warped, self.mask)
        return lncc_loss(self.fixed, warped, self.mask, self.window)


def build_level(fixed: Volume, moving: Volume, linear: LinearFit, grid: BSplineGrid,
                region: Sequence[Tuple[int, int]], factors: Sequence[int], voxel_mm: float,
                window_mm: float, device: torch.device, dtype: torch.dtype,
                region_mask: Optional[np.ndarray] = None, metric: str = "lncc") -> ImageLevel:
    """The image term of one level: the fixed image pooled by `factors` (i, j, k) on `region` ([lo, hi)
    index ranges), the moving image smoothed about one level voxel wide, and the linear map into it. With
    metric 'mind', both become MIND-SSC descriptors with neighbours one level voxel apart."""
    (i0, i1), (j0, j1), (k0, k1) = region
    fixed_values = normalised_intensities(fixed)
    if metric == "mind":
        fixed_values = mind_ssc(fixed_values, fixed.geometry.spacing[::-1], voxel_mm)
    else:
        fixed_values = fixed_values[None]
    pooled = _pool(torch.as_tensor(fixed_values[:, k0:k1, j0:j1, i0:i1], device=device)[None], factors)
    if region_mask is None:
        mask = torch.ones_like(pooled[:, :1])
    else:
        mask = _pool(torch.as_tensor(region_mask[k0:k1, j0:j1, i0:i1].astype(np.float32), device=device)[None, None],
                     factors)
    positions = [lo + f * np.arange(n) + (f - 1) / 2.0 for (lo, _), f, n in zip(region, factors, pooled.shape[:1:-1])]
    level_mm = tuple(float(f * s) for f, s in zip(factors, fixed.geometry.spacing))

    moving_values = normalised_intensities(moving)
    width_kji = smoothing_widths(voxel_mm, moving.geometry)
    if max(width_kji) > 1:
        moving_values = ndimage.uniform_filter(moving_values, width_kji, mode="nearest")
    moving_values = mind_ssc(moving_values, moving.geometry.spacing[::-1], voxel_mm) if metric == "mind" \
        else moving_values[None]
    matrix, translation = _lps_to_normalised(moving.geometry)
    index = np.stack(np.meshgrid(*positions[::-1], indexing="ij")[::-1], axis=-1).reshape(-1, 3)
    base = linear.apply(fixed.geometry.index_to_physical(index)) @ matrix.T + translation
    level_matrix = fixed.geometry.index_to_physical_matrix @ np.diag(np.asarray(factors, dtype=float))
    window = max(3, 2 * int(round(window_mm / min(level_mm) / 2)) + 1)
    return ImageLevel(
        fixed=pooled.to(dtype), mask=mask.to(dtype),
        moving=torch.as_tensor(moving_values, device=device, dtype=dtype)[None],
        base=torch.as_tensor(base, device=device, dtype=dtype),
        weights=grid.weights(positions, device, dtype),
        to_normalised=torch.as_tensor(matrix.T, device=device, dtype=dtype),
        level_mm=level_mm,  # type: ignore[arg-type]
        direction_inverse=torch.as_tensor(np.linalg.inv(level_matrix), device=device, dtype=dtype),
        window=window,
        metric=metric,
    )


def _lps_to_normalised(geometry: Geometry) -> Tuple[np.ndarray, np.ndarray]:
    """The affine map from LPS mm to grid_sample's [-1, 1] coordinates (i, j, k order) of a whole image."""
    size = np.asarray(geometry.size, dtype=float)
    scale = np.where(size > 1, 2.0 / np.maximum(size - 1, 1), 0.0)
    matrix = np.diag(scale) @ np.linalg.inv(geometry.index_to_physical_matrix)
    translation = np.where(size > 1, -1.0, 0.0) - matrix @ np.asarray(geometry.origin)
    return matrix, translation


def _pool(values: torch.Tensor, factors_ijk: Sequence[int]) -> torch.Tensor:
    """Average-pool (1, 1, k, j, i) by per-axis factors; a partial block at a far edge is the mean of the voxels it has."""
    kernel = tuple(int(f) for f in factors_ijk[::-1])
    if kernel == (1, 1, 1):
        return values
    return F.avg_pool3d(values, kernel_size=kernel, stride=kernel, ceil_mode=True)
