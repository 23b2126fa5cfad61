"""Reject pairs whose displacement disagrees with the others.

One wrong correspondence (a region matched to a look-alike 20 mm away) pulls
the dense field far off, while the pairs are only useful together. Every pair
says "this fixed region moves to that moving region"; a robust linear fit of
all pairs' centroid displacements (a translation for few pairs, an affine map
for many) tells which pairs are inconsistent with the rest. They are dropped
and reported, never silently.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from ..metrics import centroid
from ..roipairs import RoiPairs

MIN_PAIRS_FOR_AFFINE = 12


def displacement_residuals(pairs: RoiPairs, rounds: int = 3, tolerance_mm: float = 8.0) -> Tuple[np.ndarray, np.ndarray]:
    """(residual in mm of each pair's centroid displacement from the robust fit, inlier flags)."""
    fixed = np.array([centroid(p.fixed_mask, pairs.fixed_geometry) for p in pairs])
    moving = np.array([centroid(p.moving_mask, pairs.moving_geometry) for p in pairs])
    inliers = np.ones(len(fixed), dtype=bool)
    residuals = np.zeros(len(fixed))
    for _ in range(rounds):
        predicted = _fit(fixed[inliers], moving[inliers], fixed)
        residuals = np.linalg.norm(moving - predicted, axis=1)
        spread = 1.4826 * np.median(np.abs(residuals[inliers] - np.median(residuals[inliers])))
        limit = max(tolerance_mm, np.median(residuals[inliers]) + 3.0 * spread)
        updated = residuals <= limit
        if updated.sum() < 2 or np.array_equal(updated, inliers):
            break
        inliers = updated
    return residuals, inliers


def _fit(fixed: np.ndarray, moving: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Moving positions predicted at `at`: median translation for few pairs, least-squares affine for many."""
    if len(fixed) < MIN_PAIRS_FOR_AFFINE:
        return at + np.median(moving - fixed, axis=0)
    design = np.hstack([fixed, np.ones((len(fixed), 1))])
    solution, *_ = np.linalg.lstsq(design, moving, rcond=None)
    return np.hstack([at, np.ones((len(at), 1))]) @ solution


def reject_inconsistent(pairs: RoiPairs, tolerance_mm: float) -> Tuple[RoiPairs, List[dict]]:
    """(the consistent pairs, a record of each rejected one). Fewer than 3 pairs cannot be judged."""
    if len(pairs) < 3 or tolerance_mm <= 0:
        return pairs, []
    residuals, inliers = displacement_residuals(pairs, tolerance_mm=tolerance_mm)
    kept = RoiPairs(pairs.fixed_geometry, pairs.moving_geometry)
    rejected = []
    for pair, residual, inlier in zip(pairs, residuals, inliers):
        if inlier:
            kept.append(pair)
        else:
            rejected.append({"name": pair.name, "source": pair.source, "residual_mm": round(float(residual), 2)})
    return kept, rejected


def drop_contradicted(pairs: RoiPairs, dice_after, below: float) -> Tuple[RoiPairs, List[dict]]:
    """(the pairs the fit honoured, a record of each pair it could not honour).

    After a fit with the image term, a correct pair ends overlapping its partner: the image and the other pairs
    agree with it. A pair whose fixed and warped moving ROI still overlap by less than `below` (Dice) was
    pulled one way by its own term and another by the image and the other pairs: it is contradicted, and it
    is dropped so that a refit no longer bends the field towards it. All pairs contradicted, or `below` 0:
    nothing is dropped (there is nothing left to trust more than the pairs)."""
    bad = [value < below for value in dice_after]
    if below <= 0 or not any(bad) or all(bad):
        return pairs, []
    kept = RoiPairs(pairs.fixed_geometry, pairs.moving_geometry)
    dropped = []
    for pair, value, contradicted in zip(pairs, dice_after, bad):
        if contradicted:
            dropped.append({"name": pair.name, "source": pair.source, "dice_after_first_fit": round(float(value), 3)})
        else:
            kept.append(pair)
    return kept, dropped
