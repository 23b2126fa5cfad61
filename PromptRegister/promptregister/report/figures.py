"""The report's figures, as RGB arrays: alignment before and after (colour overlay, checkerboard), the region
pairs on both images in matching colours, and the Jacobian determinant of the transform."""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import SimpleITK as sitk

from ..io.segmentation import pair_colour
from ..metrics import jacobian_determinant
from ..volume import Volume
from ..warp import warp_volume
from .images import (GALLERY_SCALE, MAX_PLANE_PX, PLANES, checkerboard, colour_bar, column, display_scale,
                     diverging, draw_contours, grey, overlay, plane, row, to_rgb, window)

JACOBIAN_LOG2_LIMIT = 1.0
"""The Jacobian map's colour range: log2 det J from -1 (halved volume, blue) to +1 (doubled, red)."""


def centre_voxel(masks: Sequence[np.ndarray], shape) -> np.ndarray:
    """The (k, j, i) voxel nearest the centroid of all masks together (the grid's centre when there are none)."""
    union = np.any(np.stack(masks), axis=0) if len(masks) else np.zeros(shape, bool)
    if not union.any():
        return np.array(shape) // 2
    return np.round(np.argwhere(union).mean(axis=0)).astype(int)


def alignment_figures(fixed: Volume, moving: Volume, transform: sitk.Transform, centre) -> Dict[str, np.ndarray]:
    """'overlay' and 'checkerboard': rows before / after registration, columns the three planes."""
    before = warp_volume(moving, sitk.Transform(3, sitk.sitkIdentity), fixed.geometry).array
    after = warp_volume(moving, transform, fixed.geometry).array
    fixed_window, moving_window = window(fixed.array), window(moving.array)
    overlays, boards = [], []
    for warped in (before, after):
        overlay_row, board_row = [], []
        for name in PLANES:
            f = grey(plane(fixed.array, fixed.geometry, name, centre, 1), fixed_window)
            m = grey(plane(warped, fixed.geometry, name, centre, 1), moving_window)
            overlay_row.append(overlay(f, m))
            board_row.append(checkerboard(f, m))
        overlays.append(row(overlay_row))
        boards.append(row(board_row))
    return {"overlay": column(overlays), "checkerboard": column(boards)}


GALLERY_PAIRS = 24
"""At most this many pairs are drawn (the table lists all of them)."""
GALLERY_COLUMNS = 4
"""Pairs per row of the gallery."""


def best_plane(mask: np.ndarray) -> tuple:
    """(plane name, voxel) showing a region best: the plane across its thinnest axis (a one-slice region's own
    slice), through its middle."""
    present = np.argwhere(mask)
    extents = present.max(axis=0) - present.min(axis=0)
    axis = int(np.argmin(extents))  # numpy axis: 0 = k (axial), 1 = j (coronal), 2 = i (sagittal)
    return ("axial", "coronal", "sagittal")[axis], np.round(np.median(present, axis=0)).astype(int)


def pair_tile(volume: Volume, mask: np.ndarray, colour, limits) -> np.ndarray:
    name, voxel = best_plane(mask)
    scale = display_scale(volume.geometry, GALLERY_SCALE, MAX_PLANE_PX // 2)
    picture = to_rgb(grey(plane(volume.array, volume.geometry, name, voxel, 1, scale=scale), limits))
    outline = plane(mask.astype(np.uint8), volume.geometry, name, voxel, 0, scale=scale).astype(bool)
    return draw_contours(picture, [outline], [colour])


def pair_figure(fixed: Volume, moving: Volume, fixed_masks, moving_masks) -> np.ndarray:
    """A gallery: for each pair (up to GALLERY_PAIRS), the fixed image through its fixed region beside the
    moving image through its moving region, both outlined in the pair's colour (the table's)."""
    fixed_limits, moving_limits = window(fixed.array), window(moving.array)
    tiles = []
    for index, (fixed_mask, moving_mask) in enumerate(list(zip(fixed_masks, moving_masks))[:GALLERY_PAIRS]):
        colour = pair_colour(index)
        tiles.append(row([pair_tile(fixed, fixed_mask, colour, fixed_limits),
                          pair_tile(moving, moving_mask, colour, moving_limits)], gap=2, background=colour))
    if not tiles:
        return np.ones((8, 8, 3))
    rows = [row(tiles[start:start + GALLERY_COLUMNS], gap=12) for start in range(0, len(tiles), GALLERY_COLUMNS)]
    return column(rows, gap=12)


def jacobian_figure(field: np.ndarray, fixed: Volume, centre) -> np.ndarray:
    """log2 of the Jacobian determinant on the three planes (blue: the moving image is compressed there, red:
    stretched, white: unchanged), voxels that fold (det <= 0) in black, and the colour bar."""
    determinant = jacobian_determinant(field, fixed.geometry)
    pictures = []
    for name in PLANES:
        values = plane(determinant, fixed.geometry, name, centre, 0)
        picture = diverging(np.log2(np.clip(values, 1e-6, None)), JACOBIAN_LOG2_LIMIT)
        picture[values <= 0] = 0.0
        pictures.append(picture)
    height = max(p.shape[0] for p in pictures)
    return row(pictures + [colour_bar(height, JACOBIAN_LOG2_LIMIT)])
