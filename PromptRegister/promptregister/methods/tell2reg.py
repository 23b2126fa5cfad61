"""Tell2Reg: the same text prompt on both images (Tell2Reg paper, Sec. 2 and
Algorithm 1), slice by slice in 3D.

A text detector (GroundingDINO) finds boxes for each phrase on the moving
slices and on the fixed slices within +/- search_mm; boxes nearly the size of
the slice and tiny ones are dropped; each box prompts the segmenter; regions
found for the same phrase are matched one to one by prototype cosine
similarity above a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import PromptRegisterError
from ..models.text import TextDetector, clean_phrases
from ..options.methods import Tell2RegOptions
from ..progress import StageProgress
from .matching import cosine_matrix, greedy_pairs
from .pairs import SlicePair
from .samreg import moving_slices_for
from .slices import SlicedVolume, search_ranges


PAPER_PHRASES = ("hole", "head", "prostate", "dog", "correspond", "middle")
"""The prompt set of the Tell2Reg paper (Table 2)."""


@dataclass
class TextRegions:
    """Regions found by text on one slice: masks, prototypes, and the phrase of each."""

    masks: np.ndarray
    prototypes: np.ndarray
    phrases: List[str]


def text_regions(volume: SlicedVolume, index: int, detector: TextDetector, phrases: List[str],
                 options: Tell2RegOptions) -> TextRegions:
    image = volume.image(index)
    detections = detector.detect(image, phrases, options.box_threshold, options.text_threshold)
    height, width = image.shape[:2]
    embedding = volume.embedding(index)
    masks, prototypes, found = [], [], []
    for box, phrase in zip(detections.boxes, detections.phrases):
        area = (box[2] - box[0]) * (box[3] - box[1]) / float(height * width)
        if not options.min_box_area <= area <= options.max_box_area:
            continue
        prediction = volume.segmenter.segment(embedding, box=box, multimask=True)
        mask = prediction.masks[int(np.argmax(prediction.scores))]
        if not mask.any():
            continue
        masks.append(mask)
        prototypes.append(embedding.prototype(mask))
        found.append(phrase)
    if not masks:
        return TextRegions(np.zeros((0, height, width), bool), np.zeros((0, 1)), [])
    return TextRegions(np.stack(masks), np.stack(prototypes), found)


def tell2reg(fixed: SlicedVolume, moving: SlicedVolume, detector: TextDetector, phrases,
             options: Optional[Tell2RegOptions] = None,
             progress: Optional[StageProgress] = None) -> List[SlicePair]:
    """Corresponding region pairs found by the same phrases on both images."""
    options = options or Tell2RegOptions()
    report = progress or (lambda stage, fraction: None)
    phrases = clean_phrases(phrases)
    if detector is None:
        raise PromptRegisterError("Tell2Reg needs a text detector (GroundingDINO); choose one with --detector")
    slices = moving_slices_for(moving, options.moving_slices, options.slice_step)
    near = search_ranges(fixed, moving, slices, options.search_mm, report)

    fixed_regions: Dict[int, TextRegions] = {}
    pairs: List[SlicePair] = []
    for done, s in enumerate(slices):
        report("tell2reg: detect, segment and match", done / max(len(slices), 1))
        moving_regions = text_regions(moving, s, detector, phrases, options)
        for f in near[s]:
            if f not in fixed_regions:
                fixed_regions[f] = text_regions(fixed, f, detector, phrases, options)
        matches = []
        for phrase in sorted(set(moving_regions.phrases)):
            rows = [i for i, p in enumerate(moving_regions.phrases) if p == phrase]
            candidates = [(f, i) for f in near[s] for i, p in enumerate(fixed_regions[f].phrases) if p == phrase]
            if not candidates:
                continue
            similarity = cosine_matrix(moving_regions.prototypes[rows],
                                       np.stack([fixed_regions[f].prototypes[i] for f, i in candidates]))
            for row, column, value in greedy_pairs(similarity, options.threshold):
                matches.append((value, phrase, rows[row], candidates[column]))
        matches.sort(key=lambda match: -match[0])
        for rank, (value, phrase, row, (f, i)) in enumerate(matches[:options.pairs_per_slice]):
            pairs.append(SlicePair(
                fixed_slice=f, fixed_mask=fixed_regions[f].masks[i], moving_slice=s,
                moving_mask=moving_regions.masks[row], score=value, name=f"{phrase} {s}",
                source={"method": "tell2reg", "phrase": phrase, "moving_slice": s, "fixed_slice": f,
                        "rank": rank, "similarity": round(value, 4)}))
    report("tell2reg: detect, segment and match", 1.0)
    return pairs
