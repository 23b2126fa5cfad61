"""Slice-level ROI pairs: what the three methods find, before they become 3D RoiPairs.

Every method pairs a 2D region on one moving slice with a 2D region on one
fixed slice. Keeping them 2D until the end makes de-duplication cheap and
avoids holding a full-volume mask per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence

import numpy as np

from ..roipairs import RoiPair, RoiPairs
from .matching import mask_iou
from .slices import SlicedVolume


@dataclass
class SlicePair:
    """A fixed-slice region and a moving-slice region that correspond.

    Attributes:
        fixed_slice, moving_slice: slice indices in each volume's SliceFrame.
        fixed_mask, moving_mask: (rows, cols) bool on those slices.
        score: the method's similarity of the two regions (higher is better).
        source: provenance (method, prompt, slices, ...), JSON-serialisable.
        name: label shown to users.
    """

    fixed_slice: int
    fixed_mask: np.ndarray
    moving_slice: int
    moving_mask: np.ndarray
    score: float
    source: Dict[str, Any] = field(default_factory=dict)
    name: str = ""


def deduplicate(pairs: Sequence[SlicePair], max_iou: float = 0.8) -> List[SlicePair]:
    """Best-scoring first; a pair is dropped when a kept pair on the same slices overlaps it
    by IoU > max_iou on both sides."""
    kept: List[SlicePair] = []
    for pair in sorted(pairs, key=lambda p: -p.score):
        duplicate = any(
            other.fixed_slice == pair.fixed_slice and other.moving_slice == pair.moving_slice
            and mask_iou(other.fixed_mask, pair.fixed_mask) > max_iou
            and mask_iou(other.moving_mask, pair.moving_mask) > max_iou
            for other in kept)
        if not duplicate:
            kept.append(pair)
    return kept


def spread_cap(pairs: Sequence[SlicePair], max_pairs: int) -> List[SlicePair]:
    """At most max_pairs pairs, taken rank by rank across moving slices (every slice's best pair
    first, then every slice's second best, ...) so a cap keeps the spatial coverage."""
    if len(pairs) <= max_pairs:
        return list(pairs)
    by_slice: Dict[int, List[SlicePair]] = {}
    for pair in sorted(pairs, key=lambda p: -p.score):
        by_slice.setdefault(pair.moving_slice, []).append(pair)
    ranked = [(rank, -pair.score, pair) for group in by_slice.values() for rank, pair in enumerate(group)]
    ranked.sort(key=lambda entry: entry[:2])
    return [pair for _, _, pair in ranked[:max_pairs]]


def to_roi_pairs(pairs: Sequence[SlicePair], fixed: SlicedVolume, moving: SlicedVolume) -> RoiPairs:
    """3D RoiPairs on the two voxel grids; pairs whose mask vanishes on the voxel grid are left out."""
    result = RoiPairs(fixed.volume.geometry, moving.volume.geometry)
    for pair in pairs:
        fixed_mask = fixed.to_volume(pair.fixed_mask, pair.fixed_slice)
        moving_mask = moving.to_volume(pair.moving_mask, pair.moving_slice)
        if fixed_mask.any() and moving_mask.any():
            result.append(RoiPair(fixed_mask, moving_mask, float(pair.score), dict(pair.source), pair.name))
    return result
