"""Where a moving region's prototype peaks on the fixed slices, and which of the segmenter's masks is the ROI.

PromptReg's two per-prompt choices (PromptReg paper, Sec. 2): the corresponding prompt is the fixed embedding
cell most similar to the moving ROI's prototype (searched over a slab of slices, or near where an image
registration maps the click), and of SAM's three candidate masks one is taken as the ROI on each side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from ..errors import PromptRegisterError
from ..models.base import SliceEmbedding
from .guided import Guide, closest_candidate
from .marginal import sigmoid
from .matching import cosine_matrix
from .slices import SlicedVolume, coarse_slices, refine_slices


@dataclass
class Peak:
    """Where a prototype is most similar among the searched fixed slices."""

    slice_index: int
    xy: np.ndarray       # (x, y) fixed-slice pixels
    similarity: float
    confidence: float    # peak / best similarity at least peak_exclusion_cells away


def find_peak(prototype: np.ndarray, embeddings: Sequence[Tuple[int, SliceEmbedding]],
              exclusion_cells: int) -> Peak:
    """The most similar embedding cell over several slices, as a point on its slice."""
    return peak_of_maps([(index, embedding, embedding.similarity(prototype)) for index, embedding in embeddings],
                        exclusion_cells)


def peak_of_maps(maps: Sequence[Tuple[int, SliceEmbedding, np.ndarray]], exclusion_cells: int) -> Peak:
    """find_peak over similarity maps already computed (NaN where a cell may not be chosen)."""
    best = max(maps, key=lambda item: np.nanmax(item[2]) if np.isfinite(item[2]).any() else -np.inf)
    index, embedding, similarity = best
    if not np.isfinite(similarity).any():
        raise PromptRegisterError("no valid embedding cell on the searched fixed slices")
    row, col = np.unravel_index(int(np.nanargmax(similarity)), similarity.shape)
    peak = float(similarity[row, col])
    second = -np.inf
    for _, _, other in maps:
        masked = other.copy()
        r0, c0 = max(0, row - exclusion_cells), max(0, col - exclusion_cells)
        masked[r0:row + exclusion_cells + 1, c0:col + exclusion_cells + 1] = np.nan
        if np.isfinite(masked).any():
            second = max(second, float(np.nanmax(masked)))
    confidence = peak / second if np.isfinite(second) and second > 0 else float("inf")
    return Peak(index, cell_centre(embedding, row, col), peak, confidence)


def search_peak(fixed: SlicedVolume, group: Sequence[int], prototype: np.ndarray, stride: int,
                exclusion_cells: int) -> Peak:
    """The peak over the fixed slices `group`, searched coarse to fine: the coarse slices first, then also
    the slices between the best coarse slice and its coarse neighbours (embedded here, in one batch)."""
    searched = coarse_slices(group, stride)
    if stride > 1:
        coarse = find_peak(prototype, [(f, fixed.embedding(f)) for f in searched], exclusion_cells)
        refined = refine_slices(group, coarse.slice_index, stride)
        fixed.embed(refined)
        searched = sorted(set(searched) | set(refined))
    return find_peak(prototype, [(f, fixed.embedding(f)) for f in searched], exclusion_cells)


def guided_peak(fixed: SlicedVolume, guide: Guide, point_lps: Sequence[float], prototype: np.ndarray,
                exclusion_cells: int) -> Peak:
    """The peak among the fixed cells within guide.radius_mm of where the image registration maps the click."""
    maps = []
    for index in guide.fixed_slices(fixed, point_lps):
        embedding = fixed.embedding(index)
        similarity = embedding.similarity(prototype).astype(float)
        near = guide.near_cells(fixed, index, embedding, point_lps)
        if near.any():
            similarity[~near] = np.nan
            maps.append((index, embedding, similarity))
    if not maps:  # the radius is below one cell: the cell nearest the mapped click
        index, xy = fixed.point_to_pixel(np.clip(guide.fixed_point(point_lps), *_bounds(fixed)))
        return Peak(index, xy, 0.0, float("inf"))
    return peak_of_maps(maps, exclusion_cells)


def _bounds(volume: SlicedVolume) -> Tuple[np.ndarray, np.ndarray]:
    """The LPS box of a volume's voxel centres (low, high)."""
    corners = volume.volume.geometry.bounds()
    return corners.min(axis=0), corners.max(axis=0)


def cell_centre(embedding: SliceEmbedding, row: int, col: int) -> np.ndarray:
    """(x, y) slice pixel position of an embedding cell's centre, kept inside the slice."""
    grid = embedding.grid
    cell_h, cell_w = grid.cell_size
    xy = grid.to_image(np.array([(col + 0.5) * cell_w, (row + 0.5) * cell_h]))
    height, width = grid.image_size
    return np.clip(xy, [0.5, 0.5], [width - 0.5, height - 0.5])


def best_mask(segmenter, embedding: SliceEmbedding, points: np.ndarray, labels: np.ndarray,
              choice: str = "score") -> Tuple[np.ndarray, np.ndarray]:
    """(mask, probability map) of the segmenter's highest-scoring multimask output ('score'), or of the
    smallest non-empty one ('part')."""
    prediction = segmenter.segment(embedding, points=points, labels=labels, multimask=True)
    best = int(np.argmax(prediction.scores))
    areas = [int(mask.sum()) for mask in prediction.masks]
    if choice == "part" and any(areas):
        best = min((i for i, area in enumerate(areas) if area), key=lambda i: areas[i])
    return prediction.masks[best], sigmoid(prediction.logits[best])


def matching_mask(segmenter, embedding: SliceEmbedding, points: np.ndarray, labels: np.ndarray,
                  prototype: np.ndarray, target_area: Optional[float] = None,
                  expected: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(mask, probability map) of the multimask output whose prototype is most similar to `prototype`:
    of SAM's part / object / whole answers on the fixed slice, the one that corresponds to the moving ROI.
    With `target_area` (pixels), only the outputs within a factor of 2 of the one closest to it compete.
    With `expected` (a mask on the slice: an image registration's image of the moving ROI), the output that
    overlaps it most wins, when any does."""
    prediction = segmenter.segment(embedding, points=points, labels=labels, multimask=True)
    candidates = [i for i, mask in enumerate(prediction.masks) if mask.any()]
    if not candidates:
        best = int(np.argmax(prediction.scores))
        return prediction.masks[best], sigmoid(prediction.logits[best])
    if target_area is not None:
        ratio = {i: abs(np.log(prediction.masks[i].sum() / target_area)) for i in candidates}
        closest = min(ratio.values())
        candidates = [i for i in candidates if ratio[i] <= closest + np.log(2.0)]
    if expected is not None and expected.any():
        chosen = closest_candidate([prediction.masks[i] for i in candidates], expected)
        if chosen is not None:
            best = candidates[chosen]
            return prediction.masks[best], sigmoid(prediction.logits[best])
    similarity = cosine_matrix(prototype[None], np.stack([embedding.prototype(prediction.masks[i])
                                                          for i in candidates]))[0]
    best = candidates[int(np.argmax(similarity))]
    return prediction.masks[best], sigmoid(prediction.logits[best])
