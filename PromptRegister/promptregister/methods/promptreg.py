"""PromptReg: corresponding prompts (PromptReg paper, Secs. 2-3), in 3D.

For each point prompt on the moving volume:
1. the moving ROI is the segmenter's best mask for the prompt on its slice;
2. its prototype is compared (cosine) with every embedding cell of the fixed
   slices within +/- search_mm; the most similar cell is the primary
   corresponding prompt (it picks the fixed slice and the in-plane point);
3. the fixed ROI is the segmenter's best mask for that prompt, refined by
   auxiliary prompts while the two ROIs' shapes disagree (auxiliary.py);
4. optionally marginalised over random transforms of the moving slice and
   prompt (marginal.py).
The pair's score is the peak similarity; the ratio of the peak to the best
similarity away from it is reported as a confidence figure, and how well the
marginalised copies agree as the pair's `agreement` (FitOptions.weighting
"confidence" weights the fit by it). The fixed-slice search can run coarse to
fine (PromptRegOptions.search_stride) to embed fewer fixed slices.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from ..errors import PromptRegisterError
from ..models.base import SliceEmbedding
from ..options.methods import MASK_CHOICES, PromptRegOptions  # noqa: F401 (PromptReg's settings, re-exported)
from ..progress import StageProgress
from .auxiliary import auxiliary_prompt
from .closeup import CloseUp, move_embedding_time
from .prompt_masks import best_mask, guided_peak, matching_mask, peak_of_maps, search_peak
from .guided import Guide, overlap
from .marginal import agreement, average_masks, random_transforms
from .pairs import SlicePair
from .slices import SlicedVolume, search_ranges



@dataclass(frozen=True)
class PointPrompt:
    """A clicked point in LPS mm; positive (inside the structure) or negative (outside)."""

    point: Tuple[float, float, float]
    positive: bool = True


def group_prompts(moving: SlicedVolume, prompts: Sequence[PointPrompt],
                  one_region: bool = False) -> List[Tuple[int, np.ndarray, np.ndarray, tuple]]:
    """One prompt per positive point: (moving slice, points (n, 2), labels (n,), the LPS point), with the
    negative points of the same slice added to every positive prompt there. With `one_region` every point
    (positive or negative) prompts one region together, on the first positive point's slice (the interactive
    loop: a click, then more clicks that refine that region)."""
    if not prompts:
        raise PromptRegisterError("PromptReg needs at least one point prompt")
    located = [(moving.point_to_pixel(p.point), p) for p in prompts]
    positives = [(s, xy, p) for (s, xy), p in located if p.positive]
    if not positives:
        raise PromptRegisterError("PromptReg needs at least one positive point (inside a structure)")
    if one_region:
        s, _, first = positives[0]
        elsewhere = [p.point for (n_s, _), p in located if n_s != s]
        if elsewhere:
            raise PromptRegisterError(
                f"the points of one region must lie on one moving slice (slice {s}); "
                f"{[round(v, 2) for v in elsewhere[0]]} is on another: start a new region for it")
        ordered = sorted(located, key=lambda item: not item[1].positive)  # positives first, the first one first
        points = np.array([xy for (_, xy), _ in ordered], dtype=np.float64)
        labels = np.array([1 if p.positive else 0 for _, p in ordered])
        return [(s, points, labels, tuple(float(v) for v in first.point))]
    groups = []
    for s, xy, prompt in positives:
        negatives = [n_xy for (n_s, n_xy), p in located if not p.positive and n_s == s]
        points = np.array([xy] + negatives, dtype=np.float64)
        labels = np.array([1] + [0] * len(negatives))
        groups.append((s, points, labels, tuple(float(v) for v in prompt.point)))
    return groups


def promptreg(fixed: SlicedVolume, moving: SlicedVolume, prompts: Sequence[PointPrompt],
              options: Optional[PromptRegOptions] = None,
              progress: Optional[StageProgress] = None, first_number: int = 0,
              one_region: bool = False, guide: Optional[Guide] = None) -> List[SlicePair]:
    """One region pair per positive point prompt. `first_number`: how many prompts came before these (the
    interactive session asks one prompt at a time): prompt n is named "prompt n" and seeded options.seed + n - 1,
    as it would be in one call with every prompt. `one_region`: all the points prompt one region (group_prompts).
    `guide`: an image registration to search the fixed prompt near (methods/guided.py) instead of the
    +/- search_mm slab; the pair's source then keeps its overlap with the registration's image ("guide_dice")."""
    options = options or PromptRegOptions()
    report = progress or (lambda stage, fraction: None)
    if guide is not None and options.closeup_mm > 0:
        return _on_closeups(fixed, moving, prompts, options, report, first_number, one_region, guide)
    groups = group_prompts(moving, prompts, one_region)
    stride = int(options.search_stride)
    if guide is None:
        near = search_ranges(fixed, moving, [s for s, *_ in groups], options.search_mm, report, stride)
    else:
        moving.embed(sorted({s for s, *_ in groups}), report)
        fixed.embed(sorted({f for *_, point in groups for f in guide.fixed_slices(fixed, point)}), report)
    segmenter = moving.segmenter
    pairs = []
    for number, (s, points, labels, point_lps) in enumerate(groups, start=first_number):
        report("promptreg: corresponding prompts", (number - first_number) / len(groups))
        moving_embedding = moving.embedding(s)
        moving_mask, moving_probability = best_mask(segmenter, moving_embedding, points, labels, options.mask_choice)
        if not moving_mask.any():
            continue
        # the moving ROI's area in fixed-slice pixels, for 'part': the fixed ROI should be about as large
        target_area = (float(moving_mask.sum()) * (moving.pixel_mm / fixed.pixel_mm) ** 2
                       if options.mask_choice == "part" else None)
        prototype = moving_embedding.prototype(moving_mask)
        expected = None
        if guide is None:
            peak = search_peak(fixed, near[s], prototype, stride, options.peak_exclusion_cells)
        else:
            peak = guided_peak(fixed, guide, point_lps, prototype, options.peak_exclusion_cells)
            expected = guide.predicted_mask(fixed, peak.slice_index, moving, s, moving_mask)
        fixed_embedding = fixed.embedding(peak.slice_index)
        fixed_points, fixed_labels = peak.xy[None], np.array([1])
        fixed_mask, fixed_probability = matching_mask(segmenter, fixed_embedding, fixed_points, fixed_labels,
                                                      prototype, target_area, expected)
        auxiliary = 0
        for _ in range(options.max_auxiliary):
            if not fixed_mask.any():
                break
            extra = auxiliary_prompt(moving_mask, fixed_mask, moving.pixel_mm, fixed.pixel_mm,
                                     options.sigma_mm, options.step_px)
            if extra is None:
                break
            fixed_points = np.vstack([fixed_points, extra.xy[None]])
            fixed_labels = np.append(fixed_labels, extra.label)
            fixed_mask, fixed_probability = matching_mask(segmenter, fixed_embedding, fixed_points, fixed_labels,
                                                          prototype, target_area, expected)
            auxiliary += 1
        pair_agreement = None
        if options.marginal_samples > 0:
            allowed = (None if guide is None else
                       guide.near_cells(fixed, peak.slice_index, fixed_embedding, point_lps))
            marginalised = _marginalise(moving, s, points, labels, moving_probability, fixed_embedding,
                                        fixed_probability, options, seed=options.seed + number,
                                        target_area=target_area, allowed=allowed, expected=expected,
                                        progress=_within(report, (number - first_number + 0.5) / len(groups),
                                                         0.5 / len(groups)))
            # an empty average means the copies disagree entirely: keep the unmarginalised ROIs, agreement 0
            moving_mask, fixed_mask, pair_agreement = marginalised or (moving_mask, fixed_mask, 0.0)
        if not fixed_mask.any() or not moving_mask.any():
            continue
        pairs.append(SlicePair(
            fixed_slice=peak.slice_index, fixed_mask=fixed_mask, moving_slice=s, moving_mask=moving_mask,
            score=peak.similarity, name=f"prompt {number + 1}",
            source={"method": "promptreg", "prompt_lps": [round(v, 3) for v in point_lps], "moving_slice": s,
                    "fixed_slice": peak.slice_index, "fixed_prompt_px": np.round(peak.xy, 2).tolist(),
                    "similarity": round(peak.similarity, 4), "confidence": round(min(peak.confidence, 1e6), 4),
                    "auxiliary_prompts": auxiliary, "marginal_samples": options.marginal_samples,
                    **({} if pair_agreement is None else {"agreement": round(pair_agreement, 4)}),
                    **({} if expected is None else {"guide_dice": round(overlap(fixed_mask, expected), 4)})}))
    report("promptreg: corresponding prompts", 1.0)
    return pairs


def _on_closeups(fixed: SlicedVolume, moving: SlicedVolume, prompts: Sequence[PointPrompt],
                 options: PromptRegOptions, report: StageProgress, first_number: int, one_region: bool,
                 guide: Guide) -> List[SlicePair]:
    """promptreg one click at a time, each on a close-up of the moving volume around the click and one of the
    fixed volume around where the guide maps it (options.closeup_mm). A click the guide maps outside the fixed
    volume is matched on whole slices."""
    positives = [prompt for prompt in prompts if prompt.positive]
    if one_region:
        positives = positives[:1]
    whole = replace(options, closeup_mm=0.0)
    pairs: List[SlicePair] = []
    for offset, prompt in enumerate(positives):
        number = first_number + offset
        part = _within(report, offset / max(len(positives), 1), 1.0 / max(len(positives), 1))
        mapped = guide.fixed_point(prompt.point)
        if not fixed.volume.geometry.contains(mapped):
            pairs += promptreg(fixed, moving, [prompt] + [p for p in prompts if not p.positive], whole, part,
                               number, one_region, guide)
            continue
        moving_up = CloseUp.around(moving, prompt.point, options.closeup_mm, options.closeup_mm / 2.0)
        fixed_up = CloseUp.around(fixed, mapped, options.closeup_mm, options.closeup_mm / 2.0)
        inside = [p for p in prompts if p is not prompt and (one_region or not p.positive)
                  and moving_up.view.volume.geometry.contains(p.point)]
        found = promptreg(fixed_up.view, moving_up.view, [prompt] + inside, whole, part, number, one_region, guide)
        move_embedding_time((fixed_up, moving_up), (fixed, moving))
        for pair in found:
            pair.closeups = (fixed_up, moving_up)
            pair.source.update(moving_slice=moving_up.whole_slice(pair.moving_slice),
                               fixed_slice=fixed_up.whole_slice(pair.fixed_slice), closeup_mm=options.closeup_mm)
        pairs += found
    report("promptreg: corresponding prompts", 1.0)
    return pairs


def _within(report: StageProgress, start: float, width: float) -> StageProgress:
    """Progress of one part of the prompts stage, as a share of the whole stage (so it never goes back)."""
    return lambda stage, fraction: report("promptreg: corresponding prompts", start + width * fraction)


def _marginalise(moving: SlicedVolume, s: int, points: np.ndarray, labels: np.ndarray,
                 moving_probability: np.ndarray, fixed_embedding: SliceEmbedding, fixed_probability: np.ndarray,
                 options: PromptRegOptions, seed: int, target_area: Optional[float] = None,
                 progress: Optional[StageProgress] = None, allowed: Optional[np.ndarray] = None,
                 expected: Optional[np.ndarray] = None) -> Optional[Tuple[np.ndarray, np.ndarray, float]]:
    """Average the ROI probabilities over random transforms of the moving slice and its prompt; the fixed
    ROI of each copy is found on the fixed slice the untransformed prompt chose.

    Returns (moving mask, fixed mask, agreement), or None when an averaged mask is empty. The agreement
    (marginal.agreement) is how much the copies' fixed ROIs agree with the averaged one: a pair whose
    correspondence changes when the slice is turned or scaled is one the fit should trust less. `allowed` (cells
    of the fixed embedding) and `expected` (a fixed-slice mask): a guide's limits (promptreg's `guide`)."""
    segmenter = moving.segmenter
    image = moving.image(s)
    transforms = random_transforms(options.marginal_samples, image.shape[:2], seed)
    height, width = image.shape[:2]
    moving_maps, fixed_maps = [moving_probability], [fixed_probability]
    used = 1  # maps that count toward the agreement: the untransformed prompt's and each usable copy's
    transformed_images = [t.image(image) for t in transforms]
    def embedded(done: int, total: int) -> None:  # a chance to stop (cancel) between encoder batches
        if progress is not None:
            progress("marginalise", done / max(total, 1))
    embeddings = segmenter.embed(transformed_images, progress=embedded)
    for transform, embedding in zip(transforms, embeddings):
        moved = transform.points(points)
        inside = (moved[:, 0] >= 0) & (moved[:, 0] <= width) & (moved[:, 1] >= 0) & (moved[:, 1] <= height)
        if not inside[0]:  # the positive point left the slice (scaled up): this sample says nothing
            continue
        used += 1
        mask, probability = best_mask(segmenter, embedding, moved[inside], labels[inside], options.mask_choice)
        if not mask.any():  # the copy found nothing: it counts against the agreement
            continue
        moving_maps.append(transform.back(probability))
        prototype = embedding.prototype(mask)
        similarity = fixed_embedding.similarity(prototype).astype(float)
        if allowed is not None and allowed.any():
            similarity[~allowed] = np.nan
        peak = peak_of_maps([(0, fixed_embedding, similarity)], options.peak_exclusion_cells)
        fixed_maps.append(matching_mask(segmenter, fixed_embedding, peak.xy[None], np.array([1]), prototype,
                                        target_area, expected)[1])
    moving_mask, fixed_mask = average_masks(moving_maps), average_masks(fixed_maps)
    if not moving_mask.any() or not fixed_mask.any():
        return None
    return moving_mask, fixed_mask, agreement(fixed_maps, fixed_mask, used)


def sample_prompts(moving: SlicedVolume, count: int, seed: int) -> List[PointPrompt]:
    """`count` positive prompts drawn uniformly (seeded) from the moving volume's foreground: voxels above
    Otsu's threshold of the windowed volume, eroded by one voxel, on slices with foreground."""
    from skimage.filters import threshold_otsu

    if count < 1:
        raise PromptRegisterError(f"the number of sampled prompts must be at least 1; got {count}")
    intensities = moving.window.to_uint8(moving.volume.array)
    foreground = intensities > threshold_otsu(intensities)
    eroded = ndimage.binary_erosion(foreground)
    candidates = np.argwhere(eroded if eroded.any() else foreground)  # (k, j, i)
    if len(candidates) == 0:
        raise PromptRegisterError("the moving image has no foreground to sample prompts from")
    rng = np.random.default_rng(seed)
    chosen = candidates[rng.choice(len(candidates), size=min(count, len(candidates)), replace=False)]
    points = moving.volume.geometry.index_to_physical(chosen[:, ::-1].astype(float))
    return [PointPrompt(tuple(float(v) for v in point)) for point in points]
