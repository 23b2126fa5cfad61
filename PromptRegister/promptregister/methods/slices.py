"""A volume as the 2D slices a segmenter sees, with lazy, cached embeddings.

The three methods work slice by slice: they ask for a slice's RGB image, its
embedding, its everything-mode masks, and put 2D masks back on the voxel grid.
`SlicedVolume` does that once per slice (whole-volume intensity window, the
volume's `SliceFrame`) and only for the slices asked for.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import PromptRegisterError
from ..intensity import IntensityWindow
from ..models.base import EverythingMasks, EverythingOptions, Segmenter, SliceEmbedding
from ..progress import StageProgress
from ..slicing import SliceFrame
from ..volume import Volume



def outside_message(point_lps: Sequence[float], name: str, geometry) -> str:
    """What to say about a point prompt outside an image: where the image is, in both conventions."""
    point = np.round(np.asarray(point_lps, float), 2).tolist()
    ras = [-point[0], -point[1], point[2]]
    return (f"point {point} (LPS mm; {ras} in RAS) lies outside the {name} image, which spans "
            f"{geometry.describe_bounds()}; give points inside it (use --point-space ras for Slicer's RAS coordinates)")


class SlicedVolume:
    """Slices, embeddings and everything-mode masks of one volume, computed on demand.

    Arguments:
        volume: the image (LPS geometry).
        segmenter: embeds and segments the slices.
        window: intensity window (default: 0.5-99.5 percentiles of the whole volume).
        name: "fixed" or "moving", used in messages.
        axis: the index axis to slice along (default: SliceFrame's choice for the geometry); a close-up of a
            volume keeps the whole volume's.
    """

    def __init__(self, volume: Volume, segmenter: Segmenter, window: Optional[IntensityWindow] = None,
                 name: str = "volume", axis: Optional[int] = None):
        if volume.array.ndim != 3:
            raise PromptRegisterError(f"the {name} image must be 3D; got an array of shape {volume.array.shape}")
        self.volume = volume
        self.segmenter = segmenter
        self.name = name
        self.frame = SliceFrame.for_geometry(volume.geometry, axis)
        self.window = window or IntensityWindow.from_percentiles(volume.array)
        self._images: Dict[int, np.ndarray] = {}
        self._embeddings: Dict[int, SliceEmbedding] = {}
        self._everything: Dict[Tuple[int, EverythingOptions], EverythingMasks] = {}
        self.embed_seconds = 0.0  # encoder time spent on this volume's slices, for stage timings

    # -- geometry ------------------------------------------------------------------
    @property
    def num_slices(self) -> int:
        return self.frame.num_slices

    @property
    def slice_mm(self) -> float:
        """Distance between neighbouring slices in mm."""
        return float(self.volume.geometry.spacing[self.frame.axis])

    @property
    def pixel_mm(self) -> float:
        return float(self.frame.pixel_mm)

    def relative_position(self, index: float) -> float:
        """Where slice `index` lies along the through-plane axis, 0 (first) .. 1 (last) of the extent."""
        return (index + 0.5) / self.num_slices

    def slices_near(self, relative: float, search_mm: float) -> List[int]:
        """Slices within +/- search_mm of the slice at the given relative position.

        The images are not registered yet, so slices are matched by their relative
        position along the through-plane axis, not by physical coordinates.
        """
        centre = relative * self.num_slices - 0.5
        reach = search_mm / self.slice_mm
        low = max(0, int(np.ceil(centre - reach - 1e-9)))
        high = min(self.num_slices - 1, int(np.floor(centre + reach + 1e-9)))
        if high < low:  # search range narrower than one slice: the nearest slice
            nearest = int(np.clip(round(centre), 0, self.num_slices - 1))
            return [nearest]
        return list(range(low, high + 1))

    def point_to_pixel(self, point_lps: Sequence[float]) -> Tuple[int, np.ndarray]:
        """(slice index, (x, y) pixel) of an LPS point; an error when it lies outside the volume."""
        slice_index, row, col = self.frame.physical_to_pixel(np.asarray(point_lps, dtype=float)[None])
        s, r, c = float(slice_index[0]), float(row[0]), float(col[0])
        rows, cols = self.frame.shape
        inside = -0.5 <= s <= self.num_slices - 0.5 and -0.5 <= r <= rows - 0.5 and -0.5 <= c <= cols - 0.5
        if not inside or not np.isfinite([s, r, c]).all():
            raise PromptRegisterError(
                outside_message(point_lps, self.name, self.volume.geometry))
        slice_number = int(np.clip(np.floor(s + 0.5), 0, self.num_slices - 1))
        return slice_number, np.array([np.clip(c, 0, cols - 1) + 0.5, np.clip(r, 0, rows - 1) + 0.5])

    def pixel_to_point(self, slice_index: int, xy: np.ndarray) -> np.ndarray:
        """LPS point of a pixel position (x, y) on a slice (pixel centres at .5)."""
        return self.frame.pixel_to_physical(slice_index, np.asarray(xy[1]) - 0.5, np.asarray(xy[0]) - 0.5)

    def to_volume(self, mask: np.ndarray, slice_index: int) -> np.ndarray:
        """A slice mask as a boolean (k, j, i) mask on the voxel grid."""
        return self.frame.mask_to_volume(mask, slice_index)

    # -- content ---------------------------------------------------------------------
    def image(self, index: int) -> np.ndarray:
        """RGB uint8 slice (rows, cols, 3)."""
        if index not in self._images:
            self._images[index] = self.window.to_rgb(self.frame.extract(self.volume.array, index))
        return self._images[index]

    def foreground_slices(self, level: int = 10, min_fraction: float = 0.02) -> List[int]:
        """Slices where at least min_fraction of the pixels are brighter than `level` (0-255 after windowing)."""
        found = []
        for index in range(self.num_slices):
            plane = self.window.to_uint8(self.frame.extract(self.volume.array, index))
            if (plane > level).mean() >= min_fraction:
                found.append(index)
        return found

    def embed(self, indices: Sequence[int], progress: Optional[StageProgress] = None,
              stage: str = "embed") -> None:
        """Embed the slices not embedded yet (one batched call)."""
        missing = [i for i in dict.fromkeys(indices) if i not in self._embeddings]
        if not missing:
            return
        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(f"{stage} {self.name}", done / max(total, 1))
        started = time.perf_counter()
        embeddings = self.segmenter.embed([self.image(i) for i in missing], progress=report)
        self.embed_seconds += time.perf_counter() - started
        self._embeddings.update(zip(missing, embeddings))

    def is_embedded(self, index: int) -> bool:
        """Whether slice `index` has its embedding already (asking for it costs no encoder run)."""
        return index in self._embeddings

    @property
    def num_embedded(self) -> int:
        """How many of this volume's slices have been embedded so far (each one encoder run)."""
        return len(self._embeddings)

    def embedding(self, index: int) -> SliceEmbedding:
        if index not in self._embeddings:
            self.embed([index])
        return self._embeddings[index]

    def everything(self, index: int, options: EverythingOptions) -> EverythingMasks:
        """Everything-mode masks of a slice (cached per slice and options)."""
        key = (index, options)
        if key not in self._everything:
            self._everything[key] = self.segmenter.segment_everything(self.embedding(index), options)
        return self._everything[key]


def search_ranges(fixed: SlicedVolume, moving: SlicedVolume, moving_slices: Sequence[int], search_mm: float,
                  progress: Optional[StageProgress] = None, stride: int = 1) -> Dict[int, List[int]]:
    """For each moving slice, the fixed slices within +/- search_mm of its relative position. The moving
    slices and the fixed slices a search starts on (`coarse_slices`: all of them when stride is 1) are
    embedded here, in one batch per volume."""
    near = {s: fixed.slices_near(moving.relative_position(s), search_mm) for s in moving_slices}
    moving.embed(list(near), progress)
    fixed.embed(sorted({f for group in near.values() for f in coarse_slices(group, stride)}), progress)
    return near


def coarse_slices(group: Sequence[int], stride: int) -> List[int]:
    """The slices of `group` whose index is a multiple of `stride` (shared by every search, so searches
    from neighbouring prompts reuse the same embeddings), or the middle one when none is."""
    if stride < 1:
        raise PromptRegisterError(f"the search stride must be at least 1 slice; got {stride}")
    chosen = [f for f in group if f % stride == 0]
    return chosen or [group[len(group) // 2]]


def refine_slices(group: Sequence[int], coarse_best: int, stride: int) -> List[int]:
    """The slices of `group` closer to the best coarse slice than the stride: where a coarse-to-fine search
    looks next (the coarse slices between which the true best may lie)."""
    return [f for f in group if abs(f - coarse_best) < stride]
