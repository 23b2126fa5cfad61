"""The user's own correspondence: a point on the moving image and its counterpart on the fixed one.

Each point pair gives two things:
- a landmark pair: small balls around the two points (LANDMARK_RADIUS_MM), which the dense stage pulls
  together like any ROI pair, so a point pair never does worse than its two points used as landmarks;
- a region pair: the segmenter's region at each point, kept only when the two regions look like the same
  structure (each contains its point, their areas agree within REGION_AREA_RATIO, and each point sits at the
  same place within its region, within REGION_OFFSET_SHARE of the region's size). Where the images disagree
  (MR to ultrasound) the segmenter's region at the fixed point is often not the structure the user meant:
  such a region pair is doubtful, and only the points are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from ..errors import PromptRegisterError
from ..geometry import Geometry
from ..roipairs import RoiPair
from .matching import cosine_matrix
from .pairs import SlicePair
from .prompt_masks import best_mask
from .promptreg import PromptRegOptions
from .slices import SlicedVolume

LANDMARK_RADIUS_MM = 3.0
"""Radius of the balls that stand for the two points of a point pair (the landmark pair)."""

REGION_AREA_RATIO = 2.0
"""A region pair is doubtful when one region's area (mm^2) is more than this many times the other's."""

REGION_OFFSET_SHARE = 0.5
"""... or when the points sit at places in their regions that differ by more than this share of the regions'
equivalent radius (plus one pixel): a point at the middle of one region and at the edge of the other."""


@dataclass(frozen=True)
class PointPair:
    """A user's correspondence: `moving` and `fixed` LPS points (mm) on the same anatomy."""

    moving: Tuple[float, float, float]
    fixed: Tuple[float, float, float]


def parse_point_pair(text: str, space: str = "lps") -> PointPair:
    """'MX,MY,MZ:FX,FY,FZ' -> PointPair (LPS); `space` 'ras' flips x and y of both points (Slicer's RAS)."""
    parts = text.replace(" ", "").split(":")
    values: List[List[float]] = []
    for part in parts:
        try:
            values.append([float(v) for v in part.split(",")])
        except ValueError:
            values.append([])
    if len(parts) != 2 or any(len(v) != 3 for v in values):
        raise PromptRegisterError(f"a point pair is the moving point and the fixed point, MX,MY,MZ:FX,FY,FZ in mm; "
                                  f"got {text!r}")
    flip = np.array([-1.0, -1.0, 1.0]) if space == "ras" else np.ones(3)
    moving, fixed = (tuple(float(v) for v in np.asarray(point) * flip) for point in values)
    return PointPair(moving, fixed)


def ball(point: Sequence[float], geometry: Geometry, radius_mm: float) -> np.ndarray:
    """(k, j, i) bool: the voxels whose centres lie within radius_mm of a point (the nearest voxel at least)."""
    centres = geometry.voxel_centres()
    distance = np.linalg.norm(centres - np.asarray(point, dtype=float), axis=-1)
    mask = distance <= radius_mm
    if not mask.any():
        mask[np.unravel_index(int(np.argmin(distance)), distance.shape)] = True
    return mask


def landmark_pair(pair: PointPair, number: int, fixed: Geometry, moving: Geometry,
                  radius_mm: float = LANDMARK_RADIUS_MM) -> RoiPair:
    """The two points as a pair of small balls."""
    return RoiPair(ball(pair.fixed, fixed, radius_mm), ball(pair.moving, moving, radius_mm), 1.0,
                   {"method": "point pair", "kind": "landmark", "moving_lps": [round(v, 3) for v in pair.moving],
                    "fixed_lps": [round(v, 3) for v in pair.fixed], "radius_mm": radius_mm},
                   f"point pair {number} (points)")


def mask_at_point(segmenter, embedding, xy: np.ndarray, prototype: np.ndarray) -> Tuple[np.ndarray, float]:
    """(mask, cosine similarity to `prototype`) of the segmenter's answer to one positive point: among its masks
    that contain the point, the one most like `prototype` (the moving region's). A clear error when no mask
    contains it."""
    prediction = segmenter.segment(embedding, points=np.asarray(xy, float)[None], labels=np.array([1]),
                                   multimask=True)
    col, row = (int(np.floor(v)) for v in xy)
    candidates = [i for i, mask in enumerate(prediction.masks)
                  if 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1] and mask[row, col]]
    if not candidates:
        raise PromptRegisterError("the segmenter found no region at this point on the fixed volume; click inside "
                                  "the structure that matches the pair's moving region")
    prototypes = np.stack([embedding.prototype(prediction.masks[i]) for i in candidates])
    similarity = cosine_matrix(prototype[None], prototypes)[0]
    best = int(np.argmax(similarity))
    return prediction.masks[candidates[best]], float(similarity[best])


def region_doubts(fixed_mask: np.ndarray, fixed_xy: np.ndarray, fixed_pixel_mm: float, moving_mask: np.ndarray,
                  moving_xy: np.ndarray, moving_pixel_mm: float) -> List[str]:
    """Why two slice regions around corresponding points may not be the same structure (empty when they agree)."""
    reasons = []
    for mask, xy, side in ((fixed_mask, fixed_xy, "fixed"), (moving_mask, moving_xy, "moving")):
        col, row = (int(np.floor(v)) for v in xy)
        if not (0 <= row < mask.shape[0] and 0 <= col < mask.shape[1] and mask[row, col]):
            reasons.append(f"the {side} region does not contain its point")
    fixed_area = float(fixed_mask.sum()) * fixed_pixel_mm ** 2
    moving_area = float(moving_mask.sum()) * moving_pixel_mm ** 2
    if not fixed_area or not moving_area:
        return reasons + ["a region is empty"]
    ratio = max(fixed_area, moving_area) / min(fixed_area, moving_area)
    if ratio > REGION_AREA_RATIO:
        reasons.append(f"the regions' areas differ {ratio:.1f} times ({moving_area:.0f} mm2 moving, "
                       f"{fixed_area:.0f} mm2 fixed)")
    offsets = []
    for mask, xy, pixel_mm in ((fixed_mask, fixed_xy, fixed_pixel_mm), (moving_mask, moving_xy, moving_pixel_mm)):
        rows, cols = np.nonzero(mask)
        offsets.append((np.asarray(xy, float) - [cols.mean() + 0.5, rows.mean() + 0.5]) * pixel_mm)
    radius = np.sqrt(min(fixed_area, moving_area) / np.pi)
    shift = float(np.linalg.norm(offsets[0] - offsets[1]))
    if shift > REGION_OFFSET_SHARE * radius + max(fixed_pixel_mm, moving_pixel_mm):
        reasons.append(f"the points sit {shift:.1f} mm apart relative to their regions (region radius "
                       f"{radius:.1f} mm)")
    return reasons


def point_pair_regions(fixed: SlicedVolume, moving: SlicedVolume, pairs: Sequence[PointPair],
                       options: PromptRegOptions, first_number: int = 0) -> Tuple[List[SlicePair], List[dict]]:
    """(region pairs that look sound, the doubtful ones with their reasons). Pair n is "point pair n"."""
    segmenter = moving.segmenter
    sound, doubtful = [], []
    for number, pair in enumerate(pairs, start=first_number + 1):
        moving_slice, moving_xy = moving.point_to_pixel(pair.moving)
        fixed_slice, fixed_xy = fixed.point_to_pixel(pair.fixed)
        moving_embedding = moving.embedding(moving_slice)
        moving_mask, _ = best_mask(segmenter, moving_embedding, moving_xy[None], np.array([1]), options.mask_choice)
        name = f"point pair {number}"
        if not moving_mask.any():
            doubtful.append({"name": name, "reasons": ["the segmenter found no region at the moving point"]})
            continue
        prototype = moving_embedding.prototype(moving_mask)
        try:
            fixed_mask, similarity = mask_at_point(segmenter, fixed.embedding(fixed_slice), fixed_xy, prototype)
        except PromptRegisterError:
            doubtful.append({"name": name, "reasons": ["the segmenter found no region at the fixed point"]})
            continue
        reasons = region_doubts(fixed_mask, fixed_xy, fixed.pixel_mm, moving_mask, moving_xy, moving.pixel_mm)
        source = {"method": "point pair", "kind": "region", "moving_lps": [round(v, 3) for v in pair.moving],
                  "fixed_lps": [round(v, 3) for v in pair.fixed], "moving_slice": moving_slice,
                  "fixed_slice": fixed_slice, "similarity": round(similarity, 4)}
        if reasons:
            doubtful.append({"name": name, "reasons": reasons})
            continue
        sound.append(SlicePair(fixed_slice, fixed_mask, moving_slice, moving_mask, similarity, source,
                               f"{name} (regions)"))
    return sound, doubtful
