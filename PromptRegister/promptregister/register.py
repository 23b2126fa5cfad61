"""The engine's main entry point: prompts -> ROI pairs -> displacement field.

`register(fixed, moving, text=..., points=..., auto=...)` runs the
correspondence methods the prompts ask for (text -> Tell2Reg, points or
sampled points -> PromptReg, auto -> SAMReg), pools and de-duplicates their
pairs, fits the dense transform and reports per-pair similarity and
post-registration Dice, Jacobian folding and stage timings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .dense.fit import FitResult
from .dense.field_start import FieldStart
from .dense.image_linear import linear_from_images
from .dense.linear import LinearFit
from .errors import PromptRegisterError
from .methods.consistency import reject_inconsistent
from .methods.guided import Guide
from .methods.pairs import SlicePair, deduplicate, to_roi_pairs
from .methods.point_pairs import PointPair, landmark_pair, point_pair_regions
from .methods.promptreg import PointPrompt, promptreg, sample_prompts
from .methods.samreg import samreg
from .methods.slices import SlicedVolume, outside_message
from .methods.tell2reg import tell2reg
from .progress import StageProgress
from .options.flat import FLAT_OPTIONS, options_from_flat  # noqa: F401
from .options.register import (FOLDING_WEIGHT, GRID_SPACING_MM, IMAGE_REGULARISER_SCALE, IMAGE_WEIGHT,  # noqa: F401
                               PRESETS, RegisterOptions)
from .agreement import AGREEMENT_REGION_MM, ImageAgreement, image_agreement, near
from .fitting import fit_pairs, pair_dice
from .metrics import jacobian_stats
from .models.base import Segmenter
from .models.text import TextDetector, clean_phrases
from .roipairs import RoiPairs
from .volume import Volume



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
        rejected: pairs left out: doubtful ones ("why" says why) and those whose displacement disagreed with
            the others (name, source, residual).
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
        if self.methods[:1] == ["images"] and len(self.methods) > 1 and len(self.pairs) == 0:
            found.append("the prompts gave no region pair to keep (none was found, or every one was doubtful), so "
                         "the result is the image registration alone")
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


def check_volumes(fixed: Volume, moving: Volume, points: Sequence[PointPrompt] = (),
                  point_pairs: Sequence[PointPair] = ()) -> None:
    """Clear errors for inputs no method can use, found before any model is loaded: images that are not 3D
    volumes, hold NaN or are constant, point prompts outside the moving image, and point pairs whose points lie
    outside their images."""
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
    for pair in point_pairs:
        if not moving.geometry.contains(pair.moving):
            raise PromptRegisterError(outside_message(pair.moving, "moving", moving.geometry))
        if not fixed.geometry.contains(pair.fixed):
            raise PromptRegisterError(outside_message(pair.fixed, "fixed", fixed.geometry))


def find_pairs(fixed: SlicedVolume, moving: SlicedVolume, *, text: Optional[Sequence[str]] = None,
               points: Optional[Sequence[PointPrompt]] = None, point_pairs: Sequence[PointPair] = (),
               auto: bool = False, sample_points: int = 0, options: Optional[RegisterOptions] = None,
               detector: Optional[TextDetector] = None, progress: Optional[StageProgress] = None,
               timings: Optional[Dict[str, float]] = None, guide: Optional[Guide] = None) -> tuple:
    """Run the asked-for methods; returns (de-duplicated slice pairs, method names, doubtful pairs). `guide`:
    an image registration that PromptReg's clicks are matched near (methods/guided.py)."""
    options = options or RegisterOptions()
    timings = timings if timings is not None else {}
    found: List[SlicePair] = []
    methods: List[str] = []
    doubtful: List[dict] = []

    def run(name: str, method: Callable[[], List[SlicePair]]) -> None:
        """Run one method; its time without slice embedding goes to timings[name], embedding to 'embed'."""
        embedded = fixed.embed_seconds + moving.embed_seconds
        started = time.perf_counter()
        found.extend(method())
        embedding = fixed.embed_seconds + moving.embed_seconds - embedded
        timings["embed"] = timings.get("embed", 0.0) + embedding
        timings[name] = time.perf_counter() - started - embedding
        methods.append(name)

    def user_pairs() -> List[SlicePair]:
        sound, unsure = point_pair_regions(fixed, moving, point_pairs, options.promptreg)
        doubtful.extend({**entry, "why": "doubtful region pair: its points are kept"} for entry in unsure)
        return sound

    if text is not None:
        phrases = clean_phrases(text)
        run("tell2reg", lambda: tell2reg(fixed, moving, detector, phrases, options.tell2reg, progress))
    prompts = list(points or [])
    if sample_points:
        prompts += sample_prompts(moving, sample_points, options.seed)
    if prompts:
        run("promptreg", lambda: promptreg(fixed, moving, prompts, options.promptreg, progress, guide=guide))
    if point_pairs:
        run("point pairs", user_pairs)
    if auto:
        run("samreg", lambda: samreg(fixed, moving, options.samreg, progress))
    if not methods:
        raise PromptRegisterError("nothing to register with: give a text prompt, points, or ask for auto")
    return deduplicate(found, options.duplicate_iou), methods, doubtful


def roi_pairs(fixed: SlicedVolume, moving: SlicedVolume, options: RegisterOptions, **prompts) -> tuple:
    """(RoiPairs, pairs left out, method names): find_pairs with the given prompts (its keyword arguments), the
    slice pairs made 3D (grown as options.growth says), less those inconsistent with the others and, with a
    guide, those that contradict it (options.doubtful_below); point pairs add their landmark pairs. The pairs
    may be empty; register() refuses that, the benchmarks report it."""
    slice_pairs, methods, left_out = find_pairs(fixed, moving, options=options, **prompts)
    if prompts.get("guide") is not None and options.doubtful_below > 0:
        agreeing = []
        for pair in slice_pairs:
            overlap = pair.source.get("guide_dice")
            if overlap is not None and overlap < options.doubtful_below:
                left_out.append({"name": pair.name, "source": pair.source, "why": (
                    f"doubtful: its fixed region overlaps where the images put its moving region by only "
                    f"{overlap:.2f} (Dice)")})
            else:
                agreeing.append(pair)
        slice_pairs = agreeing
    pairs, rejected = reject_inconsistent(to_roi_pairs(slice_pairs, fixed, moving, options.growth), options.outlier_mm)
    geometries = (fixed.volume.geometry, moving.volume.geometry)
    for number, point_pair in enumerate(prompts.get("point_pairs") or (), start=1):
        pairs.append(landmark_pair(point_pair, number, *geometries))
    return pairs, left_out + rejected, methods


def register(fixed: Volume, moving: Volume, *, segmenter: Optional[Segmenter] = None,
             text: Optional[Sequence[str]] = None, points: Optional[Sequence[PointPrompt]] = None,
             point_pairs: Sequence[PointPair] = (), auto: bool = False, sample_points: int = 0,
             detector: Optional[TextDetector] = None, options: Optional[RegisterOptions] = None,
             progress: Optional[StageProgress] = None,
             image_registration: Optional[RegistrationResult] = None) -> RegistrationResult:
    """Register `moving` to `fixed`: the images alone, or refined by prompts.

    With no prompt this is the image registration (register_images). With prompts and the image term on
    (options.image_first, the default), the image registration comes first and the prompts refine it: clicks are
    matched near where it maps them, and the fit of their pairs starts from its field (dense/field_start.py). Otherwise (the paper preset) the
    pairs alone set the pre-alignment and the fit starts from nothing.

    Arguments:
        fixed, moving: 3D volumes (any grids; LPS geometry).
        segmenter: the SAM-family or classical segmenter (not needed without prompts).
        text: phrases for Tell2Reg (a comma-separated string works); needs `detector`.
        points: point prompts on the moving volume (LPS mm) for PromptReg.
        point_pairs: the user's correspondences, a moving point and its fixed counterpart (LPS mm) each.
        auto: SAMReg (segment everything and match).
        sample_points: also sample this many PromptReg prompts in the moving foreground (seeded).
        options: see RegisterOptions.
        progress: called as progress(stage, fraction).
        image_registration: register_images' result for these volumes and options, when it is at hand (the
            interactive loop, a benchmark's rows): it is not computed again.
    Returns:
        RegistrationResult; its transform maps fixed points to moving points.
    """
    options = options or RegisterOptions()
    check_volumes(fixed, moving, points or (), point_pairs)
    if not (text is not None or points or point_pairs or auto or sample_points):
        return register_images(fixed, moving, options, progress)
    if segmenter is None:
        raise PromptRegisterError("prompts need a segmenter (a SAM-family or the classical model)")
    base = None
    if options.image_first and options.fit.image_weight > 0:
        base = image_registration or register_images(fixed, moving, options, progress)
        options = same_stiffness(options, fixed)
    timings: Dict[str, float] = {"images": sum(base.timings.values())} if base is not None else {}
    fixed_slices = SlicedVolume(fixed, segmenter, name="fixed")
    moving_slices = SlicedVolume(moving, segmenter, name="moving")
    guide = Guide(base.fit, options.guide_mm) if base is not None else None
    pairs, rejected, methods = roi_pairs(fixed_slices, moving_slices, options, text=text, points=points,
                                         point_pairs=point_pairs, auto=auto, sample_points=sample_points,
                                         detector=detector, progress=progress, timings=timings, guide=guide)
    if len(pairs) == 0:
        if base is not None:  # every pair was doubtful: the image registration stands, and the user is told
            return replace(base, methods=["images"] + methods, rejected=list(rejected),
                           timings={**base.timings, **timings})
        raise PromptRegisterError(
            "no corresponding regions were found between the images; try other prompts, a larger search "
            "range (--search-mm) or a lower similarity threshold (--threshold)")
    if base is None:
        return fit_and_check(fixed, moving, pairs, options, methods=methods, rejected=rejected, timings=timings,
                             progress=progress)
    return fit_and_check(fixed, moving, pairs, options, methods=["images"] + methods, rejected=rejected,
                         timings=timings, progress=progress, linear=FieldStart.from_fit(base.fit))


def fit_and_check(fixed: Volume, moving: Volume, pairs: RoiPairs, options: RegisterOptions, *,
                  methods: Sequence[str] = (), rejected: Sequence[dict] = (), timings: Optional[Dict[str, float]] = None,
                  progress: Optional[StageProgress] = None, initial: Optional[np.ndarray] = None,
                  linear: Optional[LinearFit] = None) -> RegistrationResult:
    """The dense fit of given ROI pairs and the checks every result gets (Dice per pair, Jacobian, the
    do-no-harm image agreement): the second half of `register`, and the interactive session's "fit" (with
    `initial`, the previous fit's parameters, as a warm start). `linear`: a given pre-alignment instead of one
    from the pairs (the image registration's). With no pairs (and the image term on) this is the image
    registration."""
    timings = dict(timings or {})
    started = time.perf_counter()
    identical = same_image(fixed, moving)
    if identical:  # the one right answer is the identity; any fit could only move away from it
        fit = identity_fit(fixed, options)
        dice_after, dropped = pair_dice(pairs, fit), []
    else:
        pairs, fit, dice_after, dropped = fit_pairs(pairs, options.fit, (fixed, moving), drop_below=options.drop_below,
                                                    progress=progress, initial=initial, linear=linear)
    timings["fit"] = timings.get("fit", 0.0) + time.perf_counter() - started
    started = time.perf_counter()
    jacobian = jacobian_stats(fit.field, fixed.geometry)
    region = (near(np.stack([pair.fixed_mask for pair in pairs]), fixed.geometry, AGREEMENT_REGION_MM)
              if len(pairs) else None)
    agreement = image_agreement(fixed, moving, fit.transform(), region=region, metric=options.fit.image_metric)
    kept = agreement.worse and options.on_worse == "keep"
    if kept:  # do no harm: the pre-alignment, which the pairs made worse
        fit = FitResult(np.zeros(fixed.geometry.shape + (3,)), fixed.geometry, LinearFit.identity(), fit.levels,
                        fit.device, fit.seconds)
        dice_after = pair_dice(pairs, fit)
        jacobian = jacobian_stats(fit.field, fixed.geometry)
    timings["evaluate"] = timings.get("evaluate", 0.0) + time.perf_counter() - started
    return RegistrationResult(pairs, fit, dice_after, jacobian, timings, list(methods), list(rejected), agreement,
                              kept, dropped, identical, warm_started=initial is not None and not identical)


def same_stiffness(options: RegisterOptions, fixed: Volume) -> RegisterOptions:
    """The fit options of the image registration and of the fits that refine it: the regulariser is divided by
    the fixed image's volume / IMAGE_REGULARISER_SCALE (unless FitOptions.regulariser_volume_mm3 is set), whatever
    the pairs, and the pairs weigh options.pair_weight beside the image term. (Divided by the ROIs' own volume, as a fit of pairs alone has it, two 3 mm landmark balls made the
    field about five times stiffer everywhere and undid the image registration.)"""
    volume = options.fit.regulariser_volume_mm3 or (
        fixed.geometry.num_voxels * fixed.geometry.voxel_volume / IMAGE_REGULARISER_SCALE)
    return replace(options, fit=replace(options.fit, regulariser_volume_mm3=volume, roi_weight=options.pair_weight))


def register_images(fixed: Volume, moving: Volume, options: Optional[RegisterOptions] = None,
                    progress: Optional[StageProgress] = None) -> RegistrationResult:
    """The image registration: no prompt, no model. A linear start from the images (options.image_linear), then
    the dense stage with its image term alone (options.fit, which must have image_weight > 0). It is what
    `register` does with no prompt, and where prompts start from (RegisterOptions.image_first)."""
    options = options or RegisterOptions()
    check_volumes(fixed, moving)
    if options.fit.image_weight <= 0:
        raise PromptRegisterError("registering the images without a prompt needs the image term: the image weight "
                                  "is 0 (the 'paper' preset fits region pairs alone); give a prompt, or use the "
                                  "'default' or 'multimodal' preset")
    options = same_stiffness(options, fixed)
    outer = progress or (lambda stage, fraction: None)

    def report(stage: str, fraction: float) -> None:  # its stages apart from a later fit's (progress never goes back)
        outer(stage if stage.startswith("images") else f"images: {stage}", fraction)

    report("images: linear start", 0.0)
    started = time.perf_counter()
    linear = linear_from_images(fixed, moving, options.image_linear, options.fit.image_metric)
    timings = {"linear": time.perf_counter() - started}
    empty = RoiPairs(fixed.geometry, moving.geometry, [])
    return fit_and_check(fixed, moving, empty, options, methods=["images"], timings=timings, progress=report,
                         linear=linear)


def same_image(fixed: Volume, moving: Volume) -> bool:
    """The same voxels on the same grid (the same file twice, or a copy)."""
    return (fixed.geometry.is_close(moving.geometry, tolerance_mm=1e-6) and fixed.array.shape == moving.array.shape
            and np.array_equal(fixed.array, moving.array))


def identity_fit(fixed: Volume, options: RegisterOptions) -> FitResult:
    """The identity transform as a fit result on the fixed grid."""
    return FitResult(np.zeros(fixed.geometry.shape + (3,)), fixed.geometry, LinearFit.identity(), [],
                     options.fit.device, 0.0)
