"""Linear pre-alignment from ROI pairs (translation, rigid or affine).

Each pair contributes its centroid and the 8 corners of its LPS-aligned
bounding box, on both sides; the map fixed -> moving is then a weighted
least-squares fit of those paired points. Centroids correspond exactly under
any motion, box corners only when there is no rotation, so corners get a small
weight: they decide only what the centroids leave open (scale and rotation
with one or two ROIs). When the points cannot determine the requested
model (too few, coplanar, collinear) the fit falls back to fewer degrees of
freedom and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import PromptRegisterError
from ..geometry import Geometry
from ..options.fit import LINEAR_MODELS
from ..roipairs import RoiPairs


#: Smallest/largest allowed singular value of an affine matrix; beyond this the
#: fit is implausible for anatomy and falls back to rigid.
_AFFINE_SCALE_RANGE = (0.4, 2.5)


@dataclass
class LinearFit:
    """p_moving = matrix @ p_fixed + translation, in LPS mm."""

    matrix: np.ndarray
    translation: np.ndarray
    model: str
    note: str = ""

    @classmethod
    def identity(cls) -> "LinearFit":
        return cls(np.eye(3), np.zeros(3), "none")

    def apply(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=float) @ self.matrix.T + self.translation

    def to_sitk(self) -> sitk.AffineTransform:
        """ITK affine transform with the same fixed -> moving mapping (centre at origin)."""
        transform = sitk.AffineTransform(3)
        transform.SetMatrix(self.matrix.ravel().tolist())
        transform.SetTranslation(self.translation.tolist())
        return transform


def mask_landmarks(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Centroid plus the 8 corners of the LPS bounding box of a mask's voxel centres, (9, 3) mm."""
    k, j, i = np.nonzero(mask)
    points = geometry.index_to_physical(np.stack([i, j, k], axis=-1).astype(float))
    low, high = points.min(axis=0), points.max(axis=0)
    corners = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])])
    return np.vstack([points.mean(axis=0), corners])


#: Least-squares weight of a bounding-box corner relative to a centroid.
CORNER_WEIGHT = 1e-3


def landmark_weights(count: int) -> np.ndarray:
    """Weights of paired_landmarks' points: 1 for centroids, CORNER_WEIGHT for corners."""
    weights = np.full(count, CORNER_WEIGHT)
    weights[::9] = 1.0
    return weights


def paired_landmarks(pairs: RoiPairs) -> Tuple[np.ndarray, np.ndarray]:
    """Stacked (fixed, moving) landmark points of all pairs, each (9 * K, 3)."""
    if len(pairs) == 0:
        raise PromptRegisterError("No ROI pairs to align: the methods found no corresponding regions.")
    fixed = np.vstack([mask_landmarks(p.fixed_mask, pairs.fixed_geometry) for p in pairs])
    moving = np.vstack([mask_landmarks(p.moving_mask, pairs.moving_geometry) for p in pairs])
    return fixed, moving


def fit_linear(pairs: RoiPairs, model: str = "affine") -> LinearFit:
    """Least-squares linear map from the pairs' landmarks; falls back when under-determined.

    Arguments:
        pairs: ROI pairs on the fixed and moving grids.
        model: 'none', 'translation', 'rigid' or 'affine'.
    Returns:
        The fit, with `model` saying what was actually fitted and `note` why.
    """
    if model not in LINEAR_MODELS:
        raise PromptRegisterError(f"Unknown linear model {model!r}; choose one of {', '.join(LINEAR_MODELS)}.")
    if model == "none":
        return LinearFit.identity()
    fixed, moving = paired_landmarks(pairs)
    rank_fixed, rank_moving = _spread_rank(fixed), _spread_rank(moving)
    rank = min(rank_fixed, rank_moving)
    notes: List[str] = []
    if model == "affine" and rank < 3:
        if rank == 2 and _planar_images(pairs):
            fixed, moving = _add_plane_normals(fixed, moving, pairs)
        else:
            notes.append(f"the ROIs span only {rank} dimension(s), affine needs 3: using rigid")
            model = "rigid"
    if model == "rigid" and rank < 2:
        notes.append("the ROIs are collinear, rigid needs a plane: using translation")
        model = "translation"
    weights = np.concatenate([landmark_weights(9 * len(pairs)), np.ones(len(fixed) - 9 * len(pairs))])
    if model == "affine":
        fit = _fit_affine(fixed, moving, weights)
        scales = np.linalg.svd(fit.matrix, compute_uv=False)
        if np.linalg.det(fit.matrix) <= 0 or scales.min() < _AFFINE_SCALE_RANGE[0] or scales.max() > _AFFINE_SCALE_RANGE[1]:
            notes.append(f"the affine fit was implausible (scales {scales.round(2).tolist()}): using rigid")
            model = "rigid"
        else:
            fit.note = "; ".join(notes)
            return fit
    if model == "rigid":
        fit = _fit_rigid(fixed, moving, weights)
    else:
        fit = LinearFit(np.eye(3), moving[::9].mean(axis=0) - fixed[::9].mean(axis=0), "translation")
    fit.note = "; ".join(notes)
    return fit


def _spread_rank(points: np.ndarray, relative: float = 1e-3) -> int:
    """Number of directions in which a point cloud has a real extent."""
    values = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    if values[0] <= 1e-9:
        return 0
    return int((values > relative * values[0]).sum())


def _planar_images(pairs: RoiPairs) -> bool:
    return min(pairs.fixed_geometry.size) == 1 and min(pairs.moving_geometry.size) == 1


def _add_plane_normals(fixed: np.ndarray, moving: np.ndarray, pairs: RoiPairs) -> Tuple[np.ndarray, np.ndarray]:
    """Pin the through-plane direction of 2D images so an in-plane affine is determined."""
    extra_fixed, extra_moving = [], []
    for points, geometry, extra in ((fixed, pairs.fixed_geometry, extra_fixed), (moving, pairs.moving_geometry, extra_moving)):
        normal = geometry.direction_matrix[:, int(np.argmin(geometry.size))]
        centre = points.mean(axis=0)
        reach = float(np.ptp(points, axis=0).max()) or 1.0
        extra.extend([centre + reach * normal, centre - reach * normal])
    return np.vstack([fixed, extra_fixed]), np.vstack([moving, extra_moving])


def _fit_affine(fixed: np.ndarray, moving: np.ndarray, weights: np.ndarray) -> LinearFit:
    root = np.sqrt(weights)[:, None]
    design = np.hstack([fixed, np.ones((len(fixed), 1))]) * root
    solution, *_ = np.linalg.lstsq(design, moving * root, rcond=None)
    return LinearFit(solution[:3].T.copy(), solution[3].copy(), "affine")


def _fit_rigid(fixed: np.ndarray, moving: np.ndarray, weights: np.ndarray) -> LinearFit:
    """Weighted Kabsch: the proper rotation and translation that best map fixed onto moving."""
    w = weights / weights.sum()
    fixed_centre, moving_centre = w @ fixed, w @ moving
    covariance = ((fixed - fixed_centre) * w[:, None]).T @ (moving - moving_centre)
    u, _, vt = np.linalg.svd(covariance)
    sign = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rotation = vt.T @ np.diag([1.0, 1.0, sign]) @ u.T
    return LinearFit(rotation, moving_centre - rotation @ fixed_centre, "rigid")
