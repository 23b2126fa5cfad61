"""Registration quality figures, all in physical units (mm) and per label.

Every function takes arrays on one grid (warp first) and a Geometry for the
spacing and direction, so distances are in millimetres, never in pixels.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
from scipy import ndimage

from .errors import PromptRegisterError
from .geometry import Geometry


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks; NaN when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return float(2.0 * np.logical_and(a, b).sum() / total) if total else float("nan")


def _surface_distances(a: np.ndarray, b: np.ndarray, spacing_kji: np.ndarray) -> np.ndarray:
    """Distances (mm) from each surface voxel of a to the nearest surface voxel of b."""
    surface_a = a & ~ndimage.binary_erosion(a, border_value=0)
    surface_b = b & ~ndimage.binary_erosion(b, border_value=0)
    distance_to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing_kji)
    return distance_to_b[surface_a]


def hausdorff95(a: np.ndarray, b: np.ndarray, geometry: Geometry) -> float:
    """Symmetric 95th-percentile Hausdorff distance (mm): the larger of the two directed ones.

    NaN when either mask is empty.
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if not a.any() or not b.any():
        return float("nan")
    spacing = np.asarray(geometry.spacing[::-1])
    return float(max(np.percentile(_surface_distances(a, b, spacing), 95), np.percentile(_surface_distances(b, a, spacing), 95)))


def centroid(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """LPS centroid (mm) of a boolean mask's voxel centres."""
    k, j, i = np.nonzero(mask)
    if k.size == 0:
        return np.full(3, np.nan)
    return geometry.index_to_physical(np.array([i.mean(), j.mean(), k.mean()]))


def centroid_distance(a: np.ndarray, b: np.ndarray, geometry: Geometry) -> float:
    """Distance (mm) between the centroids of two masks on the same grid."""
    return float(np.linalg.norm(centroid(a, geometry) - centroid(b, geometry)))


def target_registration_error(mapped_fixed_points: np.ndarray, moving_points: np.ndarray) -> np.ndarray:
    """Per-landmark TRE (mm): |T(fixed landmark) - corresponding moving landmark|."""
    mapped_fixed_points, moving_points = np.atleast_2d(mapped_fixed_points), np.atleast_2d(moving_points)
    if mapped_fixed_points.shape != moving_points.shape:
        raise PromptRegisterError(
            f"Landmark counts differ: {len(mapped_fixed_points)} fixed vs {len(moving_points)} moving; they must correspond one to one."
        )
    return np.linalg.norm(mapped_fixed_points - moving_points, axis=1)


def jacobian_matrices(field: np.ndarray, geometry: Geometry) -> np.ndarray:
    """I + du/dx of the map p -> p + u(p) at every voxel, (k, j, i, 3, 3), derivatives in physical space: central
    differences inside, one-sided at the grid's faces."""
    derivative = np.zeros(field.shape[:3] + (3, 3))  # d u / d index along i, j, k (numpy axes 2, 1, 0)
    for index_axis, numpy_axis in ((0, 2), (1, 1), (2, 0)):
        if field.shape[numpy_axis] > 1:
            derivative[..., :, index_axis] = np.gradient(field, axis=numpy_axis)
    return _physical_jacobian(derivative, geometry)


def jacobian_determinant(field: np.ndarray, geometry: Geometry) -> np.ndarray:
    """det(I + du/dx) of the map p -> p + u(p), with derivatives in physical space, (k, j, i)."""
    return _determinant_3x3(jacobian_matrices(field, geometry))


def jacobian_determinant_at(field: np.ndarray, geometry: Geometry, voxels: np.ndarray) -> np.ndarray:
    """`jacobian_determinant` at a few voxels only, (n,) for (n, 3) (k, j, i) indices: the same differences (central
    inside, one-sided at the grid's faces), so the same values. The folding repair changes a thin shell around
    the folds of a large field and recomputes det J there alone."""
    voxels = np.asarray(voxels, dtype=np.intp).reshape(-1, 3)
    shape = field.shape[:3]
    derivative = np.zeros((len(voxels), 3, 3))
    for index_axis, numpy_axis in ((0, 2), (1, 1), (2, 0)):
        size = shape[numpy_axis]
        if size > 1:
            ahead, behind = voxels.copy(), voxels.copy()
            ahead[:, numpy_axis] = np.minimum(voxels[:, numpy_axis] + 1, size - 1)
            behind[:, numpy_axis] = np.maximum(voxels[:, numpy_axis] - 1, 0)
            step = (ahead[:, numpy_axis] - behind[:, numpy_axis]).astype(float)
            derivative[:, :, index_axis] = (field[tuple(ahead.T)] - field[tuple(behind.T)]) / step[:, None]
    return _determinant_3x3(_physical_jacobian(derivative, geometry))


def _physical_jacobian(derivative: np.ndarray, geometry: Geometry) -> np.ndarray:
    """I + du/dx from d u / d index (..., 3 components, 3 index axes)."""
    jacobian = derivative @ np.linalg.inv(geometry.index_to_physical_matrix)
    jacobian += np.eye(3)
    if min(geometry.size) == 1:  # a 2D image: no through-plane derivative exists; treat it as identity
        flat = int(np.argmin(geometry.size))
        normal = geometry.direction_matrix[:, flat]
        jacobian = jacobian + np.outer(normal, normal) - jacobian @ np.outer(normal, normal)
    return jacobian


def _determinant_3x3(m: np.ndarray) -> np.ndarray:
    """det of (..., 3, 3) matrices by the rule of Sarrus: the same value as np.linalg.det, without its LU
    factorisation per voxel (several times faster on a volume's worth of matrices)."""
    return (m[..., 0, 0] * (m[..., 1, 1] * m[..., 2, 2] - m[..., 1, 2] * m[..., 2, 1])
            - m[..., 0, 1] * (m[..., 1, 0] * m[..., 2, 2] - m[..., 1, 2] * m[..., 2, 0])
            + m[..., 0, 2] * (m[..., 1, 0] * m[..., 2, 1] - m[..., 1, 1] * m[..., 2, 0]))


LEARN2REG_BORDER = 2
"""Voxels Learn2Reg's evaluation crops from every face before SDlogJ (its 3-voxel stencil is unreliable there)."""


def sd_log_jacobian(determinant: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """SDlogJ exactly as Learn2Reg's evaluation script defines it: the standard deviation of log(det J + 3),
    the argument clipped to [1e-9, 1e9], over the grid less a 2-voxel border (and inside `mask` if given).

    The "+ 3" is Learn2Reg's: it keeps folded voxels (det J <= 0) finite, so they raise the figure instead of
    giving NaN; it also makes the figure about a quarter of the plain std(log det J) for small deformations.
    det J here comes from physical-space central differences (`jacobian_determinant`), Learn2Reg's from
    voxel-unit ones; the two determinants are equal (the matrices are similar), the stencils differ at edges."""
    determinant = np.asarray(determinant, dtype=np.float64)
    inside = np.zeros(determinant.shape, bool)
    b = LEARN2REG_BORDER
    inside[tuple(slice(b, n - b) if n > 2 * b else slice(None) for n in determinant.shape)] = True
    if mask is not None:
        inside &= mask
    return float(np.log(np.clip(determinant[inside] + 3.0, 1e-9, 1e9)).std())


def jacobian_stats(field: np.ndarray, geometry: Geometry, mask: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Min, max, mean and standard deviation of the Jacobian determinant, SDlogJ and % of voxels <= 0 (folding)."""
    determinant = jacobian_determinant(field, geometry)
    values = determinant[mask] if mask is not None else determinant.ravel()
    return {
        "jacobian_min": float(values.min()),
        "jacobian_max": float(values.max()),
        "jacobian_mean": float(values.mean()),
        "jacobian_std": float(values.std()),
        "sdlogj": sd_log_jacobian(determinant, mask),
        "folding_percent": float(100.0 * (values <= 0).mean()),
    }
