"""Slice-level ROI pairs: what the three methods find, before they become 3D RoiPairs.

Every method pairs a 2D region on one moving slice with a 2D region on one
fixed slice. Keeping them 2D until the end makes de-duplication cheap and
avoids holding a full-volume mask per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..roipairs import RoiPair, RoiPairs
from .closeup import CloseUp
from .growth import GrowthOptions, grow_pair, regions_to_volume
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
        closeups: (fixed, moving) close-ups the regions were drawn on (methods/closeup.py), or None for whole
            slices; the slice indices and masks are then the close-ups'.
    """

    fixed_slice: int
    fixed_mask: np.ndarray
    moving_slice: int
    moving_mask: np.ndarray
    score: float
    source: Dict[str, Any] = field(default_factory=dict)
    name: str = ""
    closeups: Optional[Tuple[CloseUp, CloseUp]] = None


def deduplicate(pairs: Sequence[SlicePair], max_iou: float = 0.8) -> List[SlicePair]:
    """Best-scoring first; a pair is dropped when a kept pair on the same slices overlaps it
    by IoU > max_iou on both sides."""
    kept: List[SlicePair] = []
    for pair in sorted(pairs, key=lambda p: -p.score):
        duplicate = any(
            other.closeups is pair.closeups
            and other.fixed_slice == pair.fixed_slice and other.moving_slice == pair.moving_slice
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


def to_roi_pairs(pairs: Sequence[SlicePair], fixed: SlicedVolume, moving: SlicedVolume,
                 growth: Optional[GrowthOptions] = None) -> RoiPairs:
    """3D RoiPairs on the two voxel grids; pairs whose mask vanishes on the voxel grid are left out.

    With `growth` (max_mm > 0) each pair first grows through neighbouring slices of both volumes to matched
    physical extents (growth.py); its source then records the slices each side spans."""
    result = RoiPairs(fixed.volume.geometry, moving.volume.geometry)
    growth = growth or GrowthOptions()
    for pair in pairs:
        fixed_view, moving_view = (fixed, moving) if pair.closeups is None else (up.view for up in pair.closeups)
        fixed_regions, moving_regions = grow_pair(fixed_view, pair.fixed_slice, pair.fixed_mask, moving_view,
                                                  pair.moving_slice, pair.moving_mask, growth)
        fixed_mask = regions_to_volume(fixed_view, fixed_regions)
        moving_mask = regions_to_volume(moving_view, moving_regions)
        source = dict(pair.source)
        if pair.closeups is not None:
            fixed_up, moving_up = pair.closeups
            fixed_mask, moving_mask = fixed_up.paste(fixed_mask), moving_up.paste(moving_mask)
            fixed_regions = {fixed_up.whole_slice(index): region for index, region in fixed_regions.items()}
            moving_regions = {moving_up.whole_slice(index): region for index, region in moving_regions.items()}
        if growth.max_mm > 0:
            source["grown_slices"] = {"fixed": sorted(fixed_regions), "moving": sorted(moving_regions)}
        if fixed_mask.any() and moving_mask.any():
            result.append(RoiPair(fixed_mask, moving_mask, float(pair.score), source, pair.name))
    return result
