"""Planes of volumes as RGB pictures: grey levels, colour overlays, checkerboards, contours, colour maps.

Planes are those of the fixed image's voxel grid through one voxel: axial (k fixed), coronal (j) and sagittal
(i), scaled to their physical aspect and turned so that, for the usual LPS-ordered grids, superior is up and
anterior is up (axial) or left (sagittal), the patient's right on the left (radiological convention).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
from scipy import ndimage

from ..geometry import Geometry

PLANES = ("axial", "coronal", "sagittal")
PIXELS_PER_MM = 4.0
"""Display scale: 64 mm of anatomy become 256 pixels."""
GALLERY_SCALE = 2.0
"""Pixels per mm of the pair gallery's smaller tiles."""
MAX_PLANE_PX = 256
"""Larger images are shown smaller: no plane is wider or taller than this at the main scale (half in the
gallery)."""


def display_scale(geometry: Geometry, scale: float = PIXELS_PER_MM, largest_px: int = MAX_PLANE_PX) -> float:
    """Pixels per mm for this image: `scale`, or less when its largest side would exceed `largest_px`."""
    extent_mm = max(n * s for n, s in zip(geometry.size, geometry.spacing))
    return min(scale, largest_px / extent_mm)


def plane(array: np.ndarray, geometry: Geometry, name: str, index_kji: Sequence[int], order: int,
          scale: float | None = None) -> np.ndarray:
    """One plane of a (k, j, i) array through voxel `index_kji`, resampled to `scale` pixels per mm (default:
    display_scale) and turned for display; `order` 0 for masks and labels, 1 for images."""
    scale = display_scale(geometry) if scale is None else scale
    k, j, i = (int(v) for v in index_kji)
    sx, sy, sz = geometry.spacing
    if name == "axial":
        picture, spacing = array[k], (sy, sx)
    elif name == "coronal":
        picture, spacing = array[::-1, j, :], (sz, sx)
    elif name == "sagittal":
        picture, spacing = array[::-1, :, i], (sz, sy)
    else:
        raise ValueError(f"unknown plane {name!r}; choose one of {', '.join(PLANES)}")
    zoom = [s * scale for s in spacing]
    source = picture.astype(np.float32) if order else picture
    return ndimage.zoom(source, zoom, order=order, mode="nearest", grid_mode=True)


def window(volume: np.ndarray, mask: np.ndarray | None = None) -> Tuple[float, float]:
    """Display window: the 1st and 99.5th percentiles (inside `mask` when given)."""
    values = volume[mask] if mask is not None and mask.any() else volume
    low, high = np.percentile(values, [1.0, 99.5])
    return float(low), float(high if high > low else low + 1.0)


def grey(picture: np.ndarray, limits: Tuple[float, float]) -> np.ndarray:
    """(h, w) float -> (h, w) in 0..1 through the window."""
    low, high = limits
    return np.clip((picture - low) / (high - low), 0.0, 1.0)


def to_rgb(level: np.ndarray) -> np.ndarray:
    return np.repeat(level[..., None], 3, axis=2)


def overlay(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Fixed in magenta, moving in green, both 0..1: where they agree the picture is grey, where they differ it
    is coloured."""
    return np.stack([fixed, moving, fixed], axis=-1)


def checkerboard(fixed: np.ndarray, moving: np.ndarray, square_px: int = 32) -> np.ndarray:
    """Alternating squares of the two pictures: edges that continue across the squares are aligned."""
    rows, cols = np.indices(fixed.shape)
    tiles = ((rows // square_px) + (cols // square_px)) % 2 == 0
    return to_rgb(np.where(tiles, fixed, moving))


def draw_contours(rgb: np.ndarray, masks: Sequence[np.ndarray], colours: Sequence[Tuple[float, float, float]],
                  width: int = 2) -> np.ndarray:
    """The outlines of (h, w) masks drawn onto an RGB picture in their colours, `width` pixels thick."""
    out = rgb.copy()
    for mask, colour in zip(masks, colours):
        if not mask.any():
            continue
        edge = mask & ~ndimage.binary_erosion(mask, iterations=width)
        out[edge] = colour
    return out


def diverging(values: np.ndarray, limit: float) -> np.ndarray:
    """Blue (-limit) through white (0) to red (+limit), as RGB 0..1."""
    t = np.clip(values / limit, -1.0, 1.0)[..., None]
    white = np.ones(values.shape + (3,))
    blue, red = np.array([0.15, 0.35, 0.85]), np.array([0.85, 0.15, 0.15])
    return np.where(t < 0, white + (-t) * (blue - white), white + t * (red - white))


def colour_bar(height: int, limit: float) -> np.ndarray:
    """A vertical bar of `diverging` from +limit (top) to -limit (bottom), 16 pixels wide."""
    values = np.linspace(limit, -limit, height)[:, None].repeat(16, axis=1)
    return diverging(values, limit)


def row(pictures: List[np.ndarray], gap: int = 6, background: float = 1.0) -> np.ndarray:
    """RGB pictures side by side, top-aligned, `gap` pixels apart."""
    height = max(p.shape[0] for p in pictures)
    padded = []
    for index, picture in enumerate(pictures):
        canvas = np.full((height, picture.shape[1], 3), background)
        canvas[:picture.shape[0]] = picture
        padded.append(canvas)
        if index < len(pictures) - 1:
            padded.append(np.full((height, gap, 3), background))
    return np.concatenate(padded, axis=1)


def column(rows: List[np.ndarray], gap: int = 6, background: float = 1.0) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    stacked = []
    for index, picture in enumerate(rows):
        canvas = np.full((picture.shape[0], width, 3), background)
        canvas[:, :picture.shape[1]] = picture
        stacked.append(canvas)
        if index < len(rows) - 1:
            stacked.append(np.full((gap, width, 3), background))
    return np.concatenate(stacked, axis=0)


def save_png(rgb: np.ndarray, path) -> None:
    """Write an RGB 0..1 picture as PNG (Pillow, which scikit-image brings)."""
    from PIL import Image

    Image.fromarray((np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8), mode="RGB").save(str(path), format="PNG")
