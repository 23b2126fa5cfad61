"""A guarantee against folding: repair the few voxels where the fitted field's Jacobian determinant is <= 0.

The folding penalty (folding.py) is soft: beside a strong image term a field can still fold a handful of
voxels (0.001-0.05 % on the sweep pairs). A folded voxel means the transform is not invertible there and a
resampled image tears, so the fitted field is repaired afterwards, locally:

1. det J is computed as metrics.jacobian_determinant does (central differences in physical space, on the
   fixed grid: the figure every benchmark reports).
2. Around the voxels with det J below `min_determinant`, the non-linear part of the field (the field less
   the start map: the linear pre-alignment, or the image registration that prompts refine) is blended towards
   a Gaussian-smoothed copy of itself (1 mm), with a soft weight that is 1 within 3 mm of the folded voxels
   and falls off over 3 mm more, so no new edge appears.
3. Rounds repeat (the same small smoothing, around what still folds) while anything is still folded; each
   round moves the field a little further towards its local average. When `max_rounds` rounds do not
   suffice, the non-linear part is faded out around what is left, over a length at least the size of that
   part there (a 5 mm correction faded out over 3 mm folds again at the fade's edge), twice as long at each
   of FADE_STEPS tries, and as a last resort removed: the start map alone (linear, det A > 0, or an
   image registration's field already repaired) does not fold, so the result never folds.

Only the neighbourhood of folded voxels changes (for a fade, one as wide as the correction there is large);
the rest of the field is left exactly as fitted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import numpy as np
from scipy import ndimage

from ..geometry import Geometry
from ..metrics import jacobian_determinant, jacobian_determinant_at

MIN_DETERMINANT = 0.05
"""The repair lifts det J above this, not merely above 0, so that writing the field as float32 and
interpolating it cannot bring a repaired voxel back to zero."""

SIGMA_MM = 1.0
"""Gaussian width of each round's smoothing: small, so a round changes the field only near the folds."""

RADIUS_MM = 3.0
"""Each round blends within this distance of a voxel still folded (then fades over as much again)."""

FADE_STEPS = 6
"""Fades over the correction's own size, each twice as long, before the non-linear part is removed."""


@dataclass
class UnfoldReport:
    """What the repair did: voxels folded before it, rounds of smoothing, voxels changed, the largest change
    of a displacement (mm), and whether it had to fall back to fading the non-linear part out."""

    folded_voxels: int = 0
    rounds: int = 0
    changed_voxels: int = 0
    max_change_mm: float = 0.0
    faded: bool = False

    def as_dict(self) -> Dict[str, object]:
        return asdict(self)


def unfold(field: np.ndarray, linear_field: np.ndarray, geometry: Geometry, min_determinant: float = MIN_DETERMINANT,
           max_rounds: int = 40) -> Tuple[np.ndarray, UnfoldReport]:
    """(repaired field, report): `field` (k, j, i, 3) in mm with det J > min_determinant at every voxel.

    Arguments:
        field: the fitted displacement (linear part included) on `geometry`.
        linear_field: the displacement of the start map alone on the same grid (the linear pre-alignment, or
            the image registration's repaired field); its determinant must exceed min_determinant everywhere.
        geometry: the fixed grid.
        min_determinant: the lowest determinant left after the repair.
        max_rounds: smoothing rounds before the non-linear part is faded out.
    """
    determinant = jacobian_determinant(field, geometry)
    bad = determinant <= min_determinant
    report = UnfoldReport(folded_voxels=int((determinant <= 0).sum()))
    if not bad.any():
        return field, report
    residual = field - linear_field
    repaired = residual.copy()
    total = field.copy()  # linear_field + repaired, kept up to date box by box
    spacing_kji = np.asarray(geometry.spacing, dtype=float)[::-1]
    while bad.any() and report.rounds < max_rounds:
        report.rounds += 1
        box = _box_around(bad, spacing_kji, 2.0 * RADIUS_MM + 4.0 * SIGMA_MM)
        inner = repaired[box]
        weight = _soft_region(bad[box], spacing_kji, RADIUS_MM)
        smoothed = np.stack([ndimage.gaussian_filter(inner[..., axis], SIGMA_MM / spacing_kji, mode="nearest")
                             for axis in range(3)], axis=-1)
        repaired[box] = inner + weight[..., None] * (smoothed - inner)
        total[box] = linear_field[box] + repaired[box]
        # det J changes only where the blend weight is not 0 and at those voxels' neighbours along each axis (the
        # differences reach one voxel): recompute it there alone (on a large image, a thin shell of the box).
        touched = _touched_voxels(weight > 0, box, bad.shape)
        determinant[tuple(touched.T)] = jacobian_determinant_at(total, geometry, touched)
        bad = determinant <= min_determinant
    if bad.any():
        report.faded = True
        repaired = _fade(repaired, bad, linear_field, geometry, min_determinant)
    change = np.linalg.norm(repaired - residual, axis=-1)
    report.changed_voxels = int((change > 1e-6).sum())
    report.max_change_mm = float(change.max())
    return linear_field + repaired, report


def _fade(repaired: np.ndarray, bad: np.ndarray, linear_field: np.ndarray, geometry: Geometry,
          min_determinant: float) -> np.ndarray:
    """The non-linear part faded out around the voxels that still fold, or removed when nothing else clears them.

    The fade runs over a length at least the correction's size near the folds, doubled each time (FADE_STEPS
    tries): a correction of several mm faded out over 3 mm folds again at the fade's edge, and fades that
    doubled a 3 mm radius ended up removing the correction far from any fold (on two of six sweep pairs, all
    of it). Removing the non-linear part is the last resort: the start map alone does not fold."""
    spacing_kji = np.asarray(geometry.spacing, dtype=float)[::-1]
    for step in range(FADE_STEPS):
        near = _soft_region(bad, spacing_kji, RADIUS_MM) > 0
        size_mm = float(np.linalg.norm(repaired[near], axis=-1).max())
        fade = _soft_region(bad, spacing_kji, spacing_kji.max(), max(RADIUS_MM, size_mm) * 2.0 ** step)
        repaired = repaired * (1.0 - fade)[..., None]
        bad = jacobian_determinant(linear_field + repaired, geometry) <= min_determinant
        if not bad.any():
            return repaired
    return np.zeros_like(repaired)


def _box_around(mask: np.ndarray, spacing_kji: np.ndarray, margin_mm: float) -> Tuple[slice, slice, slice]:
    """The bounding box of `mask` grown by margin_mm (clipped to the grid): where a round can change anything.
    Outside it the blend weight is 0, and inside it the smoothing sees enough context."""
    box = []
    for axis, (size, spacing) in enumerate(zip(mask.shape, spacing_kji)):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        margin = int(np.ceil(margin_mm / spacing)) + 1
        box.append(slice(max(0, hits[0] - margin), min(size, hits[-1] + margin + 1)))
    return tuple(box)


def _touched_voxels(changed: np.ndarray, box: Tuple[slice, slice, slice], shape: Tuple[int, ...]) -> np.ndarray:
    """(n, 3) (k, j, i) grid indices of the voxels whose det J a change at `changed` (a mask on `box`) can alter:
    those voxels and their six face neighbours, inside the grid."""
    rim = tuple(slice(max(0, part.start - 1), min(size, part.stop + 1)) for part, size in zip(box, shape))
    grown = np.zeros(tuple(part.stop - part.start for part in rim), bool)
    grown[tuple(slice(part.start - outer.start, part.stop - outer.start) for part, outer in zip(box, rim))] = changed
    grown = ndimage.binary_dilation(grown, ndimage.generate_binary_structure(3, 1))
    return np.argwhere(grown) + np.array([part.start for part in rim])


def _soft_region(mask: np.ndarray, spacing_kji: np.ndarray, radius_mm: float,
                 falloff_mm: Optional[float] = None) -> np.ndarray:
    """1 on `mask` and within radius_mm of it, falling smoothly to 0 over falloff_mm more (default radius_mm)."""
    if not mask.any():
        return np.zeros(mask.shape)
    distance = ndimage.distance_transform_edt(~mask, sampling=spacing_kji)
    t = np.clip(1.0 - (distance - radius_mm) / (falloff_mm or radius_mm), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)  # smoothstep: no kink where the blend starts
