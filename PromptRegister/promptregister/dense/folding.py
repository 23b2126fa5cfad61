"""An explicit folding penalty: keeps the Jacobian determinant of T(p) = S(p) + v(p) positive.

S is the start map: linear (A p + t), or an image registration's whole field when prompts refine it
(field_start.py). The Jacobian of T is that of S plus dv/dp, so the penalty must see S's own Jacobian where S is
not linear: with A alone it saw 23 folded voxels of a fit that folded 11,112 (4 % of a 64^3 hippocampus pair,
classical pairs refining the image registration), and the repair after the fit then faded the prompts' part out
over most of the image.

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
from scipy import ndimage

from ..geometry import Geometry
from ..metrics import jacobian_matrices
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


def determinants(displacement: torch.Tensor, start_jacobian: torch.Tensor, step_inverse: torch.Tensor) -> torch.Tensor:
    """det(J_S + dv/dp) at every sample; displacement (3, k, j, i) mm, start_jacobian (3, 3, 1, 1, 1) for a linear
    start (A) or (3, 3, k, j, i), step_inverse = inverse of the matrix from sample-index steps to LPS mm. Axes with
    a single sample contribute no derivative."""
    derivatives = []
    for dim in (3, 2, 1):  # index axes i, j, k
        if displacement.shape[dim] > 1:
            derivatives.append(torch.gradient(displacement, dim=dim)[0])
        else:
            derivatives.append(torch.zeros_like(displacement))
    by_index = torch.stack(derivatives, dim=1)  # (3 components, 3 index axes, k, j, i)
    jacobian = torch.einsum("anzyx,nb->abzyx", by_index, step_inverse) + start_jacobian
    a, b, c = jacobian[0], jacobian[1], jacobian[2]
    return (a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
            + a[2] * (b[0] * c[1] - b[1] * c[0]))


def start_jacobians(start, geometry: Geometry, positions: list) -> np.ndarray:
    """The start map's Jacobian at the samples, (3, 3, k, j, i) (or (3, 3, 1, 1, 1) for a linear start).

    A field start S(p) = p + u(p) (field_start.FieldStart) has metrics.jacobian_matrices of u on its own grid,
    interpolated linearly at the samples."""
    displacement = getattr(start, "displacement", None)
    if displacement is None:
        return np.asarray(start.matrix, dtype=float)[:, :, None, None, None]
    k, j, i = np.meshgrid(positions[2], positions[1], positions[0], indexing="ij")
    physical = geometry.index_to_physical(np.stack([i, j, k], axis=-1).reshape(-1, 3))
    coordinates = start.geometry.physical_to_index(physical)[:, ::-1].T  # (k, j, i) rows on the start's grid
    matrices = jacobian_matrices(displacement, start.geometry)
    sampled = [[ndimage.map_coordinates(matrices[..., a, b], coordinates, order=1, mode="nearest")
                for b in range(3)] for a in range(3)]
    return np.asarray(sampled).reshape(3, 3, *k.shape)


class FoldingPenalty:
    """mean(relu(margin - det J)^2) of the B-spline field plus the start map (linear or a field), on
    folding_samples."""

    def __init__(self, geometry: Geometry, grid: BSplineGrid, start, margin: float,
                 device: torch.device, dtype: torch.dtype) -> None:
        positions, step_matrix = folding_samples(geometry, grid)
        self.weights = grid.weights(positions, device, dtype)
        self.start = torch.as_tensor(start_jacobians(start, geometry, positions), device=device, dtype=dtype)
        self.step_inverse = torch.as_tensor(np.linalg.inv(step_matrix), device=device, dtype=dtype)
        self.margin = margin

    def __call__(self, parameters: torch.Tensor, project) -> torch.Tensor:
        displacement = project(BSplineGrid.evaluate(parameters, self.weights))
        det = determinants(displacement, self.start, self.step_inverse)
        return torch.relu(self.margin - det).pow(2).sum()
