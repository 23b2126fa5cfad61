"""The contract every segmentation backend fulfils.

A method needs four things from a model: embed 2D slices, segment from point
or box prompts, segment everything, and know where each embedding cell lies on
the slice (`EmbeddingGrid`) so that prototypes pool the right pixels. SAM-family
models and the classical, weight-free backend both implement `Segmenter`.
Images are (H, W, 3) uint8 RGB slices; points are (x, y) = (column, row) in
slice pixels; masks are boolean (H, W) arrays on the slice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Protocol, Sequence

import numpy as np
import torch

from ..errors import PromptRegisterError
from ..options.methods import EverythingOptions
from ..progress import CountProgress
from .cache import EmbeddingCache
from .device import run_in_batches
from .grid import EmbeddingGrid

"""Called as progress(done, total) while slices are embedded."""


@dataclass
class SliceEmbedding:
    """One embedded slice: the feature grid, its geometry and the image it came from.

    Attributes:
        features: (C, rows, cols) float tensor on the CPU.
        grid: where each cell of `features` lies on the slice.
        image: the (H, W, 3) uint8 slice that was embedded (needed for
            prompting, everything mode and the classical backend).
        key: content key used by the embedding cache.
    """

    features: torch.Tensor
    grid: EmbeddingGrid
    image: np.ndarray
    key: str = ""

    def prototype(self, mask: np.ndarray) -> np.ndarray:
        """Mask-averaged embedding (C,), pooling only cells covered by the mask (never padding)."""
        return self.grid.pool(self.features.float().numpy(), mask)

    def similarity(self, prototype: np.ndarray) -> np.ndarray:
        """Cosine similarity of every cell with a prototype; NaN over padding cells."""
        feats = self.features.float().numpy().reshape(self.features.shape[0], -1)
        proto = np.asarray(prototype, dtype=np.float32)
        norms = np.linalg.norm(feats, axis=0) * max(float(np.linalg.norm(proto)), 1e-12)
        sim = (proto @ feats) / np.maximum(norms, 1e-12)
        sim = sim.reshape(self.features.shape[1:])
        sim[self.grid.valid_cells() <= 0] = np.nan
        return sim


@dataclass
class MaskPrediction:
    """Masks for one prompt.

    Attributes:
        masks: (n, H, W) bool; n = 3 with multimask output, else 1.
        scores: (n,) predicted quality (SAM's IoU estimate; the classical
            backend's boundary contrast), higher is better.
        logits: (n, H, W) float32 logits on the slice (mask = logits > 0).
    """

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray

    def best(self) -> np.ndarray:
        """The highest-scoring mask (H, W)."""
        return self.masks[int(np.argmax(self.scores))]


@dataclass
class EverythingMasks:
    """Masks found in everything mode, best first.

    Attributes:
        masks: (n, H, W) bool.
        scores: (n,) predicted quality.
        stability: (n,) stability scores.
        points: (n, 2) the (x, y) prompt that produced each mask.
    """

    masks: np.ndarray
    scores: np.ndarray
    stability: np.ndarray
    points: np.ndarray

    def __len__(self) -> int:
        return int(self.masks.shape[0])


class PromptDecoding(Protocol):
    """What everything mode needs of a SAM-family segmenter (models/everything.py), the way segment-anything's
    automatic mask generator needs only a SamPredictor: the model (for its mask threshold), the device, a decoder
    for many prompts on one embedding, the prompt encoding and the upscaling of low-resolution logits."""

    model: Any
    device: Any

    def many_prompt_decoder(self, embedding: SliceEmbedding) -> Callable: ...

    def sparse_prompts(self, coords: torch.Tensor, labels: torch.Tensor) -> Any: ...

    def upscale_logits(self, low_res: torch.Tensor, grid: EmbeddingGrid) -> torch.Tensor: ...


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate one slice: (H, W, 3) uint8, at least 2 x 2 pixels."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise PromptRegisterError(
            f"a slice for the segmenter must be an (H, W, 3) RGB array, got shape {image.shape}; "
            "map intensities with IntensityWindow.to_rgb first"
        )
    if image.dtype != np.uint8:
        raise PromptRegisterError(f"a slice for the segmenter must be uint8, got {image.dtype}")
    if min(image.shape[:2]) < 2:
        raise PromptRegisterError(f"slice of {image.shape[0]} x {image.shape[1]} pixels is too small to segment")
    return image


def check_prompt(embedding: SliceEmbedding, points: Optional[np.ndarray], labels: Optional[np.ndarray],
                 box: Optional[np.ndarray]) -> tuple:
    """Validate and normalise a prompt; returns (points (N,2) or None, labels (N,) or None, box (4,) or None)."""
    if points is None and box is None:
        raise PromptRegisterError("a prompt needs at least one point or a box")
    height, width = embedding.grid.image_size
    if points is not None:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if labels is None:
            labels = np.ones(len(points), dtype=np.int64)
        labels = np.asarray(labels).reshape(-1).astype(np.int64)
        if len(labels) != len(points):
            raise PromptRegisterError(f"{len(points)} points but {len(labels)} labels")
        if not np.isin(labels, (0, 1)).all():
            raise PromptRegisterError("point labels must be 1 (inside) or 0 (outside)")
        if not np.isfinite(points).all():
            raise PromptRegisterError("point prompts contain NaN or infinite coordinates")
        outside = (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) | (points[:, 1] > height)
        if outside.any():
            raise PromptRegisterError(
                f"point prompt {points[outside][0].tolist()} lies outside the {width} x {height} slice"
            )
    if box is not None:
        box = np.asarray(box, dtype=np.float64).reshape(-1)
        if box.shape != (4,) or not np.isfinite(box).all():
            raise PromptRegisterError("a box prompt is four finite numbers x0, y0, x1, y1 in slice pixels")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise PromptRegisterError(f"box {box.tolist()} is empty: need x0 < x1 and y0 < y1")
    return points, labels, box


class Segmenter(ABC):
    """A promptable 2D segmenter with reusable slice embeddings.

    Subclasses set `name` (registry name), implement `identity` (everything
    that changes embeddings: model, checkpoint SHA-256, preprocessing) and
    `_encode` (a batch of slices -> feature grids); `embed` adds the cache,
    batching and progress on top.

    Arguments:
        cache: an `EmbeddingCache` shared between calls (None: no caching).
        batch_size: slices encoded together.
    """

    name: str = "segmenter"

    def __init__(self, cache: Optional["EmbeddingCache"] = None, batch_size: int = 4):
        self.cache = cache
        self.batch_size = max(1, int(batch_size))
        self.encoded_slices = 0  # slices that actually went through the encoder
        self.log: Callable[[str], None] = lambda message: None

    @property
    @abstractmethod
    def identity(self) -> str:
        """A string that changes whenever the embeddings of the same image would change."""

    @abstractmethod
    def _encode(self, images: Sequence[np.ndarray]) -> List[tuple]:
        """Encode validated slices; returns [(features (C, rows, cols) float32 ndarray, EmbeddingGrid)]."""

    def embed(self, images: Sequence[np.ndarray], progress: Optional[CountProgress] = None) -> List[SliceEmbedding]:
        """Embed (H, W, 3) uint8 slices; cached slices cost no encoder time.

        Arguments:
            images: the slices, any number, any size each.
            progress: called as progress(done, total) after each batch.
        Returns:
            one `SliceEmbedding` per slice, in order.
        """
        images = [check_image(image) for image in images]
        identity = self.identity
        keys = [EmbeddingCache.key(image, identity) for image in images]
        found: dict = {}
        todo: List[int] = []
        for index, key in enumerate(keys):
            entry = self.cache.get(key) if self.cache is not None else None
            if entry is None:
                todo.append(index)
            else:
                found[index] = entry
        total = len(images)
        done = total - len(todo)
        if progress:
            progress(done, total)

        def encode(chunk: Sequence[int]) -> List:
            nonlocal done
            results = self._encode([images[i] for i in chunk])
            self.encoded_slices += len(chunk)
            for i, (features, grid) in zip(chunk, results):
                found[i] = (features, grid)
                if self.cache is not None:
                    self.cache.put(keys[i], features, grid)
            done += len(chunk)
            if progress:
                progress(done, total)
            return results

        # Slices of one size are batched together; others go one group at a time.
        by_size: dict = {}
        for i in todo:
            by_size.setdefault(images[i].shape, []).append(i)
        for group in by_size.values():
            run_in_batches(group, self.batch_size, encode, self.log)
        return [SliceEmbedding(torch.from_numpy(np.asarray(found[i][0], dtype=np.float32)), found[i][1],
                               images[i], keys[i]) for i in range(total)]

    @abstractmethod
    def segment(self, embedding: SliceEmbedding, points: Optional[np.ndarray] = None,
                labels: Optional[np.ndarray] = None, box: Optional[np.ndarray] = None,
                multimask: bool = True) -> MaskPrediction:
        """Masks for one prompt: points (N, 2) (x, y) with labels 1/0, and/or a box (x0, y0, x1, y1)."""

    @abstractmethod
    def segment_everything(self, embedding: SliceEmbedding,
                           options: Optional[EverythingOptions] = None) -> EverythingMasks:
        """All masks of a slice, filtered and de-duplicated, best first."""


def foreground_mask(image: np.ndarray, level: int) -> np.ndarray:
    """Pixels brighter than `level` in any channel; background is the dark surround of a scan."""
    return np.asarray(image).max(axis=2) > level


def point_grid(points_per_side: int, image_size: tuple) -> np.ndarray:
    """SAM's regular prompt grid: cell centres of an n x n grid, as (x, y) slice pixels."""
    offset = 1.0 / (2 * points_per_side)
    ticks = np.linspace(offset, 1 - offset, points_per_side)
    xs = np.tile(ticks[None, :], (points_per_side, 1))
    ys = np.tile(ticks[:, None], (1, points_per_side))
    unit = np.stack([xs, ys], axis=-1).reshape(-1, 2)
    height, width = image_size
    return unit * np.array([width, height], dtype=np.float64)

