"""Prompt marginalisation over spatial transforms (PromptReg paper, Sec. 3.2).

The moving slice and its prompt are transformed together by random flips,
rotations (0-360 deg) and scalings (0.5-2.5) about the slice centre; each
transformed copy gives a moving ROI (mapped back) and, through its prototype,
a fixed ROI. The ROI probability maps of all copies are averaged on each side
and thresholded at 0.5. How well the copies' fixed ROIs agree with the averaged
one (`agreement`) is kept as the pair's confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
from skimage.transform import AffineTransform, warp


@dataclass(frozen=True)
class SliceTransform:
    """A similarity transform of slice pixels about the slice centre (x, y pixel coordinates)."""

    matrix: np.ndarray  # (3, 3) homogeneous, maps original (x, y) -> transformed (x, y)

    @classmethod
    def random(cls, rng: np.random.Generator, shape: Tuple[int, int], scale_range: Tuple[float, float] = (0.5, 2.5),
               flips: bool = True) -> "SliceTransform":
        height, width = shape
        angle = np.deg2rad(rng.uniform(0.0, 360.0))
        scale = rng.uniform(*scale_range)
        flip_x = -1.0 if flips and rng.random() < 0.5 else 1.0
        flip_y = -1.0 if flips and rng.random() < 0.5 else 1.0
        centre = np.array([width / 2.0, height / 2.0])
        linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) \
            @ np.diag([flip_x, flip_y])
        matrix = np.eye(3)
        matrix[:2, :2] = linear
        matrix[:2, 2] = centre - linear @ centre
        return cls(matrix)

    def points(self, xy: np.ndarray) -> np.ndarray:
        """Transform (n, 2) (x, y) points (continuous pixel coordinates, pixel centres at .5)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return xy @ self.matrix[:2, :2].T + self.matrix[:2, 2]

    def image(self, image: np.ndarray, order: int = 1) -> np.ndarray:
        """The image as seen after the transform (same size; outside is 0)."""
        return _resample(image, self.matrix, order)

    def back(self, values: np.ndarray, order: int = 1) -> np.ndarray:
        """Map a (H, W) map computed on the transformed image back onto the original pixels."""
        return _resample(values, np.linalg.inv(self.matrix), order)


def _resample(values: np.ndarray, matrix: np.ndarray, order: int) -> np.ndarray:
    # skimage works in pixel-index coordinates (centres at integers); ours put centres at .5
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    in_index = np.linalg.inv(shift) @ matrix @ shift
    inverse = AffineTransform(matrix=np.linalg.inv(in_index))  # output pixel -> input pixel
    dtype = values.dtype
    result = warp(values.astype(np.float64), inverse, order=order, mode="constant", cval=0.0, preserve_range=True)
    return np.clip(np.round(result), 0, 255).astype(np.uint8) if dtype == np.uint8 else result


def random_transforms(count: int, shape: Tuple[int, int], seed: int) -> List[SliceTransform]:
    rng = np.random.default_rng(seed)
    return [SliceTransform.random(rng, shape) for _ in range(count)]


def average_masks(probabilities: Sequence[np.ndarray], threshold: float = 0.5) -> np.ndarray:
    """Mean of the probability maps, thresholded: the marginalised ROI."""
    return np.mean(np.stack(probabilities), axis=0) > threshold


def agreement(probabilities: Sequence[np.ndarray], averaged: np.ndarray, count: int,
              threshold: float = 0.5) -> float:
    """Mean intersection over union of each map's mask (probability > threshold) with the averaged mask,
    over `count` maps: maps missing from `probabilities` (copies that found nothing) count as 0.
    1 when every copy outlined the same region, near 0 when they disagree."""
    if count < 1:
        raise ValueError("agreement needs at least one map")
    total = 0.0
    for probability in probabilities:
        mask = probability > threshold
        union = np.logical_or(mask, averaged).sum()
        total += float(np.logical_and(mask, averaged).sum() / union) if union else 0.0
    return total / count


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))
