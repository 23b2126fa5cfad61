"""The region-finding methods' settings: SAMReg, Tell2Reg, PromptReg, everything mode and the growth of slice
pairs through neighbouring slices.

Light on purpose (no torch, no numpy): the Slicer panel and the command line's argument parser read these
classes; the methods themselves live in methods/ and models/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

from ..errors import PromptRegisterError
from .checks import require_range, require_whole


@dataclass(frozen=True)
class EverythingOptions:
    """Settings of everything mode (SAM's automatic mask generator, single crop).

    Attributes:
        points_per_side: grid of points_per_side^2 prompts over the slice.
        points_per_batch: prompts decoded together.
        pred_iou_thresh: keep masks whose predicted IoU is > this.
        stability_score_thresh: keep masks whose stability is >= this.
        stability_score_offset: logit offset of the stability score.
        box_nms_thresh: box IoU above which the lower-scoring mask is dropped.
        foreground_only: drop grid points on background (see `foreground_mask`).
        foreground_level: uint8 level at or below which a pixel is background.
    """

    points_per_side: int = 16
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    foreground_only: bool = True
    foreground_level: int = 10


@dataclass(frozen=True)
class SliceSearch:
    """How the methods that pair whole slices (SAMReg, Tell2Reg) choose moving slices and their partners.

    Attributes:
        search_mm: fixed slices within +/- this distance of the moving slice's position are searched.
        threshold: minimum cosine similarity of a pair.
        pairs_per_slice: keep the K most similar pairs of each moving slice.
        slice_step: use every n-th moving slice.
        moving_slices: explicit moving slice indices (a slab); default: slices with foreground.
    """

    search_mm: float = 11.0
    threshold: float = 0.8
    pairs_per_slice: int = 5
    slice_step: int = 1
    moving_slices: Optional[Tuple[int, ...]] = None

    def __post_init__(self) -> None:
        require_range("search_mm", self.search_mm, 0, None, "a distance in mm, more than 0", low_open=True)
        require_range("threshold", self.threshold, -1, 1, "a cosine similarity in [-1, 1]")
        require_whole("pairs_per_slice", self.pairs_per_slice, 1)
        require_whole("slice_step", self.slice_step, 1)
        for index in self.moving_slices or ():
            require_whole("each of moving_slices", index, 0)


@dataclass(frozen=True)
class SamRegOptions(SliceSearch):
    """Settings of SAMReg (defaults from the paper's best settings, Tables 3-5).

    Attributes (besides SliceSearch's):
        min_area, max_area: region area as a fraction of the slice (the paper's 200 and
            7000 px on 200 x 200 slices).
        max_overlap: of two regions sharing more than this fraction of the smaller, the smaller goes.
        one_to_many: let several moving regions pair with the same fixed region.
        max_pairs: cap on all pairs (taken rank by rank across slices), which bounds the dense stage.
        everything: everything-mode settings.
    """

    min_area: float = 200 / 40000
    max_area: float = 7000 / 40000
    max_overlap: float = 0.8
    one_to_many: bool = False
    max_pairs: int = 100
    everything: EverythingOptions = field(default_factory=EverythingOptions)

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range("min_area", self.min_area, 0, 1, "a fraction of the slice area, in [0, 1]")
        require_range("max_area", self.max_area, self.min_area, 1, "a fraction of the slice area, in [min_area, 1]")
        require_range("max_overlap", self.max_overlap, 0, 1, "a fraction in [0, 1]")
        require_whole("max_pairs", self.max_pairs, 1)


@dataclass(frozen=True)
class Tell2RegOptions(SliceSearch):
    """Settings of Tell2Reg.

    Attributes (besides SliceSearch's):
        box_threshold, text_threshold: the detector's thresholds.
        min_box_area, max_box_area: boxes outside this fraction of the slice area are dropped.
    """

    box_threshold: float = 0.35
    text_threshold: float = 0.25
    min_box_area: float = 0.002
    max_box_area: float = 0.8

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range("box_threshold", self.box_threshold, 0, 1, "a detector score in [0, 1]")
        require_range("text_threshold", self.text_threshold, 0, 1, "a detector score in [0, 1]")
        require_range("min_box_area", self.min_box_area, 0, 1, "a fraction of the slice area, in [0, 1]")
        require_range("max_box_area", self.max_box_area, self.min_box_area, 1,
                      "a fraction of the slice area, in [min_box_area, 1]")


MASK_CHOICES = ("score", "part")


@dataclass(frozen=True)
class PromptRegOptions:
    """Settings of PromptReg (defaults from the paper, Tables 3-4 and Sec. 4).

    Attributes:
        search_mm: fixed slices within +/- this distance of the prompt's slice position are searched.
        sigma_mm: auxiliary prompts are added while the two directed Hausdorff distances differ by more.
        step_px: a positive auxiliary point is stepped this far toward the fixed contour.
        max_auxiliary: at most this many auxiliary prompts per pair.
        marginal_samples: random transforms to marginalise over (0 turns marginalisation off).
        search_stride: search the fixed slices coarse to fine: first every search_stride-th slice, then the
            slices around the best of those. 1 (the paper's) searches every slice; larger strides embed fewer
            fixed slices, the encoder's main cost.
        peak_exclusion_cells: cells around the peak ignored when finding the second peak.
        seed: seeds the random transforms.
        mask_choice: which of the segmenter's three masks is the ROI. 'score' (the paper's): the moving ROI
            is the highest-scoring mask, the fixed one the most similar to it. 'part': the moving ROI is the
            smallest non-empty mask (SAM's "part" answer: for a click on a small structure, the structure,
            where the top score often goes to the region around it), the fixed one the most similar among
            those closest to it in area.
        closeup_mm: with a guide (prompts refining an image registration), each click's region is segmented
            on a window this wide (mm, a cube) around the click, and its counterpart on one around where the
            image registration maps it (methods/closeup.py); 0: on whole slices (the paper's).
    """

    search_mm: float = 11.0
    sigma_mm: float = 20.0
    step_px: float = 2.0
    max_auxiliary: int = 3
    marginal_samples: int = 4
    peak_exclusion_cells: int = 3
    seed: int = 0
    mask_choice: str = "score"
    search_stride: int = 1
    closeup_mm: float = 0.0

    def __post_init__(self) -> None:
        require_range("search_mm", self.search_mm, 0, None, "a distance in mm, more than 0", low_open=True)
        require_range("sigma_mm", self.sigma_mm, 0, None, "a distance in mm, more than 0", low_open=True)
        require_range("step_px", self.step_px, 0, None, "a step in pixels, 0 or more")
        require_whole("max_auxiliary", self.max_auxiliary, 0)
        require_whole("marginal_samples", self.marginal_samples, 0)
        require_whole("seed", self.seed, 0)
        require_range("closeup_mm", self.closeup_mm, 0, None, "a width in mm, 0 (whole slices) or more")
        if int(self.search_stride) != self.search_stride or self.search_stride < 1:
            raise PromptRegisterError(f"search_stride must be a whole number of slices, at least 1; "
                                      f"got {self.search_stride!r}")
        if self.mask_choice not in MASK_CHOICES:
            raise PromptRegisterError(f"mask_choice must be one of {', '.join(MASK_CHOICES)}; got {self.mask_choice!r}")


@dataclass(frozen=True)
class GrowthOptions:
    """How far and by what rule slice regions grow into neighbouring slices (module docstring).

    Attributes:
        max_mm: the farthest a region grows each way from its slice; 0 keeps one-slice pairs (the papers').
        min_iou: stop when a slice's region overlaps the previous slice's by less than this.
        max_area_ratio: stop when the area differs from the seed region's by more than this factor.
        min_similarity: stop when the region's prototype has a cosine similarity below this with the seed's.
        min_pixels: stop when the region has fewer pixels than this.
    """

    max_mm: float = 0.0
    min_iou: float = 0.5
    max_area_ratio: float = 1.6
    min_similarity: float = 0.9
    min_pixels: int = 4

    def validate(self) -> None:
        if self.max_mm < 0:
            raise PromptRegisterError(f"grow_mm must not be negative; got {self.max_mm!r}")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise PromptRegisterError(f"the growth's min_similarity is a cosine in [-1, 1]; got {self.min_similarity!r}")
        if not 0.0 < self.min_iou <= 1.0:
            raise PromptRegisterError(f"the growth's min_iou must be in (0, 1]; got {self.min_iou!r}")
        if self.max_area_ratio < 1.0 or self.min_pixels < 1:
            raise PromptRegisterError("the growth's max_area_ratio must be >= 1 and min_pixels >= 1")
