"""SAMReg: segment everything on both images and match the regions (SAMReg
paper, Sec. 3.2 and Algorithm 1), slice by slice in 3D.

For each moving slice: everything-mode masks, filtered by area and overlap;
their prototypes (mask-averaged embeddings, pooled on the embedding grid so
SAM's padding never counts) are compared by cosine similarity with the regions
of every fixed slice within +/- search_mm; pairs are assigned greedily one to
one above a threshold and the best K per slice are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..options.methods import SamRegOptions
from ..progress import StageProgress
from .matching import area_filter, cosine_matrix, greedy_pairs, overlap_filter
from .pairs import SlicePair, spread_cap
from .slices import SlicedVolume, search_ranges



@dataclass
class Regions:
    """Filtered everything-mode regions of one slice and their prototypes."""

    masks: np.ndarray        # (n, rows, cols) bool
    prototypes: np.ndarray   # (n, C)


def slice_regions(volume: SlicedVolume, index: int, options: SamRegOptions) -> Regions:
    """Everything-mode masks of a slice after the area and overlap filters, with prototypes."""
    found = volume.everything(index, options.everything)
    masks = found.masks
    keep = area_filter(masks, options.min_area, options.max_area)
    masks, scores = masks[keep], found.scores[keep]
    keep = overlap_filter(masks, scores, options.max_overlap)
    masks = masks[keep]
    embedding = volume.embedding(index)
    prototypes = np.stack([embedding.prototype(m) for m in masks]) if len(masks) else np.zeros((0, 1))
    return Regions(masks, prototypes)


def moving_slices_for(moving: SlicedVolume, moving_slices: Optional[Sequence[int]], step: int) -> List[int]:
    """The moving slices a method works on: the given ones, or every step-th slice with foreground."""
    if moving_slices is not None:
        chosen = sorted({int(s) for s in moving_slices})
        bad = [s for s in chosen if not 0 <= s < moving.num_slices]
        if bad:
            from ..errors import PromptRegisterError
            raise PromptRegisterError(
                f"moving slice {bad[0]} is outside the moving image (0..{moving.num_slices - 1})")
        return chosen
    return moving.foreground_slices()[::max(1, int(step))]


def samreg(fixed: SlicedVolume, moving: SlicedVolume, options: Optional[SamRegOptions] = None,
           progress: Optional[StageProgress] = None) -> List[SlicePair]:
    """Corresponding region pairs found by segmenting everything and matching prototypes."""
    options = options or SamRegOptions()
    report = progress or (lambda stage, fraction: None)
    slices = moving_slices_for(moving, options.moving_slices, options.slice_step)
    near = search_ranges(fixed, moving, slices, options.search_mm, report)

    fixed_regions: Dict[int, Regions] = {}
    pairs: List[SlicePair] = []
    for done, s in enumerate(slices):
        report("samreg: segment and match", done / max(len(slices), 1))
        moving_regions = slice_regions(moving, s, options)
        if len(moving_regions.masks) == 0:
            continue
        candidates = []
        for f in near[s]:
            if f not in fixed_regions:
                fixed_regions[f] = slice_regions(fixed, f, options)
            candidates += [(f, i) for i in range(len(fixed_regions[f].masks))]
        if not candidates:
            continue
        fixed_prototypes = np.concatenate([fixed_regions[f].prototypes for f in near[s]
                                           if len(fixed_regions[f].masks)])
        similarity = cosine_matrix(moving_regions.prototypes, fixed_prototypes)
        matches = greedy_pairs(similarity, options.threshold, options.one_to_many)[:options.pairs_per_slice]
        for rank, (row, column, value) in enumerate(matches):
            f, i = candidates[column]
            pairs.append(SlicePair(
                fixed_slice=f, fixed_mask=fixed_regions[f].masks[i], moving_slice=s,
                moving_mask=moving_regions.masks[row], score=value,
                source={"method": "samreg", "moving_slice": s, "fixed_slice": f, "rank": rank,
                        "similarity": round(value, 4)}))
    report("samreg: segment and match", 1.0)
    return spread_cap(pairs, options.max_pairs)
