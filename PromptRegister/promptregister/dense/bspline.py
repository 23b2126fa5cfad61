"""Cubic B-spline free-form deformation evaluated with separable weight matrices.

The control grid is aligned with the fixed image's index axes; control point
c along an axis sits at voxel position (c - 1) * spacing, so every voxel has
its four supporting control points inside the grid. Evaluating the field on
any set of per-axis positions is three small matrix products, cheap enough to
differentiate through at every optimisation step.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np
import torch


def control_points_along(num_voxels: int, spacing_voxels: float) -> int:
    """Control points needed to cover voxel positions 0 .. num_voxels - 1."""
    return int(math.floor(max(num_voxels - 1, 0) / spacing_voxels)) + 4


def cubic_bspline_taps(positions: np.ndarray, spacing_voxels: float, num_control: int) -> Tuple[np.ndarray, np.ndarray]:
    """First supporting control point (n,) and the four cubic weights (n, 4) of each position.

    Positions beyond the grid are clamped to its support, so evaluating slightly
    outside the image (padding at a coarse level) stays well defined.
    """
    u = np.asarray(positions, dtype=np.float64) / spacing_voxels
    u = np.clip(u, 0.0, num_control - 3 - 1e-9)
    base = np.floor(u).astype(int)
    t = u - base
    taps = np.stack(
        [
            (1 - t) ** 3 / 6,
            (3 * t**3 - 6 * t**2 + 4) / 6,
            (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
            t**3 / 6,
        ],
        axis=1,
    )
    return base, taps


def cubic_bspline_weights(positions: np.ndarray, spacing_voxels: float, num_control: int) -> np.ndarray:
    """Matrix W (len(positions), num_control) with field(x) = W @ control values."""
    base, taps = cubic_bspline_taps(positions, spacing_voxels, num_control)
    weights = np.zeros((len(base), num_control))
    rows = np.arange(len(base))
    for offset in range(4):
        weights[rows, base + offset] = taps[:, offset]
    return weights


# Integrals of products of unit-spacing cubic B-splines shifted by 0..3 knots:
# mass  = integral B(x) B(x - d) dx,  slope = integral B'(x) B'(x - d) dx.
_MASS = (151 / 315, 397 / 1680, 1 / 42, 1 / 5040)
_SLOPE = (2 / 3, -1 / 8, -1 / 5, -1 / 120)


def _symmetric_kernel(taps: Sequence[float]) -> List[float]:
    return list(taps[:0:-1]) + list(taps)


def _filter_along(values: torch.Tensor, kernel: torch.Tensor, dim: int) -> torch.Tensor:
    """Correlate with a short symmetric kernel along one dimension, zeros outside.

    Shifted slices and a weighted sum: much faster on the CPU than conv3d for
    a 7-tap kernel on a small grid.
    """
    reach = (len(kernel) - 1) // 2
    size = values.shape[dim]
    padding = [0, 0] * (values.dim() - 1 - dim) + [reach, reach]
    padded = torch.nn.functional.pad(values, padding)
    out = kernel[0] * padded.narrow(dim, 0, size)
    for offset in range(1, len(kernel)):
        out = out + kernel[offset] * padded.narrow(dim, offset, size)
    return out


def _apply_gradient_gram(parameters: torch.Tensor, knots_mm: Sequence[float]) -> torch.Tensor:
    """Q c for the gradient-energy quadratic form (see BSplineGrid.gradient_energy)."""
    mass = torch.tensor(_symmetric_kernel(_MASS), dtype=parameters.dtype, device=parameters.device)
    slope = torch.tensor(_symmetric_kernel(_SLOPE), dtype=parameters.dtype, device=parameters.device)
    result = torch.zeros_like(parameters)
    for derivative_axis in range(3):  # index axis i, j, k
        filtered = parameters
        for axis in range(3):
            kernel = slope / knots_mm[axis] if axis == derivative_axis else mass * knots_mm[axis]
            filtered = _filter_along(filtered, kernel, dim=3 - axis)
        result = result + filtered
    return result


class _QuadraticEnergy(torch.autograd.Function):
    """E = c^T Q c with dE/dc = 2 Q c (Q symmetric), computed once in forward."""

    @staticmethod
    def forward(ctx, parameters: torch.Tensor, knots_mm: Tuple[float, ...]) -> torch.Tensor:  # type: ignore[override]
        with torch.no_grad():
            applied = _apply_gradient_gram(parameters, knots_mm)
        ctx.save_for_backward(applied)
        return (parameters * applied).sum()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (applied,) = ctx.saved_tensors
        return 2.0 * grad_output * applied, None


class BSplineGrid:
    """A cubic B-spline control grid over an image grid (index axes i, j, k)."""

    def __init__(self, size_ijk: Sequence[int], spacing_mm_ijk: Sequence[float], control_spacing_mm: float) -> None:
        self.spacing_voxels: Tuple[float, ...] = tuple(
            max(control_spacing_mm / s, 1.0) for s in spacing_mm_ijk
        )
        self.num_control_ijk: Tuple[int, ...] = tuple(
            control_points_along(n, c) for n, c in zip(size_ijk, self.spacing_voxels)
        )

    @property
    def parameter_shape(self) -> Tuple[int, int, int, int]:
        """(3 components, control k, control j, control i)."""
        ci, cj, ck = self.num_control_ijk
        return (3, ck, cj, ci)

    def weights(self, positions_ijk: Sequence[np.ndarray], device: torch.device, dtype: torch.dtype) -> Tuple[torch.Tensor, ...]:
        """Per-axis weight matrices (Wi, Wj, Wk) for voxel positions along i, j and k."""
        return tuple(
            torch.as_tensor(cubic_bspline_weights(p, s, n), device=device, dtype=dtype)
            for p, s, n in zip(positions_ijk, self.spacing_voxels, self.num_control_ijk)
        )

    def gradient_energy(self, parameters: torch.Tensor, spacing_mm_ijk: Sequence[float]) -> torch.Tensor:
        """Exact integral over space of |grad v|^2 (mm^3; the gradient is dimensionless).

        For a tensor-product spline the integral is a quadratic form c^T Q c in
        the coefficients with banded 1D factors (mass and slope Gram matrices):
        three 7-tap filters per axis instead of sampling the field, and the
        gradient 2 Q c comes with the value, without an autograd graph.
        """
        knots_mm = [c * s for c, s in zip(self.spacing_voxels, spacing_mm_ijk)]
        return _QuadraticEnergy.apply(parameters, tuple(knots_mm))

    def refine(self, parameters: torch.Tensor, finer: "BSplineGrid") -> torch.Tensor:
        """Coefficients on `finer` of the same spline (exact where spacing halves).

        Along an axis whose control spacing is halved, cubic B-spline subdivision:
        a fine point on a coarse knot gets (c[i-1] + 6 c[i] + c[i+1]) / 8, one half
        way gets (c[i] + c[i+1]) / 2. An axis with unchanged spacing is copied.
        """
        result = parameters
        for axis in range(3):  # index axis i, j, k -> tensor dim 3, 2, 1
            dim = 3 - axis
            coarse, fine = self.spacing_voxels[axis], finer.spacing_voxels[axis]
            count = finer.num_control_ijk[axis]
            if abs(coarse - fine) < 1e-9:
                result = result.narrow(dim, 0, count) if result.shape[dim] >= count else torch.nn.functional.pad(
                    result, [0, 0] * (3 - dim) + [0, count - result.shape[dim]])
                continue
            if abs(coarse - 2 * fine) > 1e-9:
                raise ValueError("refine() needs the same or half the control spacing along every axis")
            # Fine point 2i sits half way between coarse points i and i + 1, fine point
            # 2i + 1 on coarse point i + 1 (fine c <-> (c - 1) h, coarse i <-> (i - 1) 2 h).
            length = result.shape[dim]
            padded = torch.nn.functional.pad(result, [0, 0] * (3 - dim) + [0, 2])  # zeros past the end
            first, second, third = (padded.narrow(dim, offset, length) for offset in (0, 1, 2))
            halfway = (first + second) / 2
            on_knots = (first + 6 * second + third) / 8
            interleaved = torch.stack([halfway, on_knots], dim=dim + 1).flatten(dim, dim + 1)
            if interleaved.shape[dim] < count:
                interleaved = torch.nn.functional.pad(interleaved, [0, 0] * (3 - dim) + [0, count - interleaved.shape[dim]])
            result = interleaved.narrow(dim, 0, count)
        return result

    def taps(self, positions: np.ndarray, axis: int) -> Tuple[np.ndarray, np.ndarray]:
        """cubic_bspline_taps for voxel positions along one index axis (0 = i, 1 = j, 2 = k)."""
        return cubic_bspline_taps(positions, self.spacing_voxels[axis], self.num_control_ijk[axis])

    @staticmethod
    def evaluate(parameters: torch.Tensor, weights: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Field (3, nk, nj, ni) on the tensor grid of positions the weights were built for."""
        wi, wj, wk = weights
        field = torch.einsum("akji,xi->akjx", parameters, wi)
        field = torch.einsum("akjx,yj->akyx", field, wj)
        return torch.einsum("akyx,zk->azyx", field, wk)

    @staticmethod
    def evaluate_at(
        parameters: torch.Tensor, weights: Tuple[torch.Tensor, ...], ji_index: torch.Tensor, k_base: torch.Tensor, k_taps: torch.Tensor
    ) -> torch.Tensor:
        """Field (n, 3) at n scattered voxels of the weights' tensor grid.

        Voxel m is (k, j, i) with ji_index[m] = j * num_i + i, and k given by its
        first supporting control point k_base[m] and four weights k_taps[m]
        (cubic_bspline_taps). The i and j contractions run on the whole (j, i)
        plane, which is small; the k contraction touches 4 control points per
        voxel, so the cost follows the number of voxels asked for.
        """
        wi, wj, _ = weights
        components, control_k = parameters.shape[0], parameters.shape[1]
        plane = torch.einsum("akyi,xi->yxka", torch.einsum("akji,yj->akyi", parameters, wj), wi)
        rows = plane.reshape(-1, components)  # row (j * num_i + i) * control_k + c
        first = ji_index * control_k + k_base
        picked = rows.index_select(0, (first[:, None] + torch.arange(4, device=first.device)).reshape(-1))
        return (picked.reshape(-1, 4, components) * k_taps[:, :, None]).sum(1)
