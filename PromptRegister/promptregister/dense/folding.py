"""An explicit folding penalty: keeps the Jacobian determinant of T(p) = A p + t + v(p) positive.

A B-spline field fitted to wrong or contradicting ROI pairs can fold (the Jacobian determinant drops to or
below zero: the transform is no longer invertible, and a resampled image tears). The penalty
mean(relu(margin - det J)^2) is zero wherever the determinant is above `margin`, so it does not bias a
well-behaved fit; it is evaluated on the whole fixed image at a third of the control spacing (one voxel at
the finest level of a 3 mm grid on 1 mm voxels), at most MAX_SAMPLES points (evenly coarser beyond). It is a
soft term: it lowers folding, it cannot forbid it; the repair after the fit (unfold.py) works on every voxel.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from ..geometry import Geometry
from .bspline import BSplineGrid

STEP_DIVISOR = 3.0

MAX_SAMPLES = 262_144
"""The most points the penalty is evaluated at (64^3). A 64^3 image with a 6 mm grid on 1 mm voxels has 32^3, so
results there are unchanged; on a 200 x 200 x 96 image the third-of-the-spacing rule gave 1.1 million points, and
the penalty and its gradient took half of each fit iteration's time (bench/interactive.py --mni, 2026-12-03)."""


def folding_samples(geometry: Geometry, grid: BSplineGrid) -> Tuple[list, np.ndarray]:
    """Voxel positions (i, j, k lists) at a third of the control spacing over the whole image, and the matrix
    from sample-index steps to LPS mm."""
    steps = [max(1.0, control / STEP_DIVISOR) for control in grid.spacing_voxels]
    counts = [sample_count(size, step) for size, step in zip(geometry.size, steps)]
    factor = (float(np.prod(counts)) / MAX_SAMPLES) ** (1.0 / 3.0)
    while np.prod(counts) > MAX_SAMPLES:  # evenly coarser along every axis (a little more if rounding asks)
        steps = [step * factor for step in steps]
        counts = [sample_count(size, step) for size, step in zip(geometry.size, steps)]
        factor = 1.01
    positions = [np.arange(count) * step for count, step in zip(counts, steps)]
    return positions, geometry.index_to_physical_matrix @ np.diag(steps)


def sample_count(size: int, step: float) -> int:
    return max(2, int(np.floor((size - 1) / step)) + 1) if size > 1 else 1


def determinants(displacement: torch.Tensor, linear_matrix: torch.Tensor, step_inverse: torch.Tensor) -> torch.Tensor:
    """det(A + dv/dp) at every sample; displacement (3, k, j, i) mm, step_inverse = inverse of the matrix
    from sample-index steps to LPS mm. Axes with a single sample contribute no derivative."""
    derivatives = []
    for dim in (3, 2, 1):  # index axes i, j, k
        if displacement.shape[dim] > 1:
            derivatives.append(torch.gradient(displacement, dim=dim)[0])
        else:
            derivatives.append(torch.zeros_like(displacement))
    by_index = torch.stack(derivatives, dim=1)  # (3 components, 3 index axes, k, j, i)
    jacobian = torch.einsum("anzyx,nb->abzyx", by_index, step_inverse) + linear_matrix[:, :, None, None, None]
    a, b, c = jacobian[0], jacobian[1], jacobian[2]
    return (a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
            + a[2] * (b[0] * c[1] - b[1] * c[0]))


class FoldingPenalty:
    """mean(relu(margin - det J)^2) of the B-spline field plus the linear part, on folding_samples."""

    def __init__(self, geometry: Geometry, grid: BSplineGrid, linear_matrix: np.ndarray, margin: float,
                 device: torch.device, dtype: torch.dtype) -> None:
        positions, step_matrix = folding_samples(geometry, grid)
        self.weights = grid.weights(positions, device, dtype)
        self.linear = torch.as_tensor(linear_matrix, device=device, dtype=dtype)
        self.step_inverse = torch.as_tensor(np.linalg.inv(step_matrix), device=device, dtype=dtype)
        self.margin = margin

    def __call__(self, parameters: torch.Tensor, project) -> torch.Tensor:
        displacement = project(BSplineGrid.evaluate(parameters, self.weights))
        det = determinants(displacement, self.linear, self.step_inverse)
        return torch.relu(self.margin - det).pow(2).sum()

