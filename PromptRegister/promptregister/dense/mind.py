"""MIND-SSC, a modality-independent image descriptor (Heinrich et al., MICCAI 2013), for the image term
between images whose intensities do not correspond: MR to ultrasound, CT to MR.

Local correlation compares intensities, so it needs the same modality. MIND describes each voxel by how
similar small patches around it are to one another ("self-similarity"), which depends on local structure,
not on the intensity mapping. The SSC variant compares the 12 pairs of the six face neighbours that lie
sqrt(2) apart (no pair through the centre voxel, which noise and speckle would dominate): 12 channels per
voxel, each exp(-patch distance / local variance), scaled so that a voxel's largest channel is 1. Two images
are compared by the mean squared difference of their descriptors.
"""

from __future__ import annotations

from itertools import combinations
from typing import List, Sequence, Tuple

import numpy as np
import torch
from scipy import ndimage

FACE_NEIGHBOURS: Tuple[Tuple[int, int, int], ...] = (
    (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))
"""(k, j, i) unit offsets of the six face neighbours."""

SSC_PAIRS: List[Tuple[int, int]] = [(a, b) for a, b in combinations(range(6), 2)
                                     if any(FACE_NEIGHBOURS[a][n] + FACE_NEIGHBOURS[b][n] for n in range(3))]
"""The 12 neighbour pairs sqrt(2) apart (opposite neighbours, whose midpoint is the voxel itself, excluded)."""

CHANNELS = len(SSC_PAIRS)


def _shifted(values: np.ndarray, offset_kji: Sequence[int]) -> np.ndarray:
    """values[x + offset], the edge voxel repeated past the border."""
    padded = np.pad(values, [(abs(o), abs(o)) for o in offset_kji], mode="edge")
    slices = tuple(slice(abs(o) + o, abs(o) + o + n) for o, n in zip(offset_kji, values.shape))
    return padded[slices]


def mind_ssc(values: np.ndarray, spacing_kji: Sequence[float], distance_mm: float) -> np.ndarray:
    """The MIND-SSC descriptor (12, k, j, i) float32 of a (k, j, i) image.

    Arguments:
        values: intensities (any scale: MIND is invariant to it).
        spacing_kji: voxel size in mm along k, j, i.
        distance_mm: how far the neighbours are from the voxel (at least one voxel on every axis); the
            patches compared are about as wide. Larger distances describe coarser structure.
    """
    values = np.asarray(values, dtype=np.float32)
    steps = [max(1, int(round(distance_mm / s))) if n > 1 else 0 for s, n in zip(spacing_kji, values.shape)]
    patch = [2 * (step // 2) + 1 if n > 1 else 1 for step, n in zip(steps, values.shape)]
    neighbours = [_shifted(values, [o * step for o, step in zip(offset, steps)]) for offset in FACE_NEIGHBOURS]
    distances = np.stack([ndimage.uniform_filter((neighbours[a] - neighbours[b]) ** 2, patch, mode="nearest")
                          for a, b in SSC_PAIRS])
    variance = distances.mean(axis=0)
    typical = float(variance.mean()) or 1.0
    variance = np.clip(variance, 1e-3 * typical, 1e3 * typical)
    descriptor = np.exp(-distances / variance[None])
    descriptor /= descriptor.max(axis=0, keepdims=True)
    return descriptor.astype(np.float32)


def mind_loss(fixed: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mask-weighted mean over voxels of the mean squared descriptor difference; fixed and warped
    (1, 12, k, j, i), mask (1, 1, k, j, i). 0 for identical descriptors, at most 1."""
    difference = ((fixed - warped) ** 2).mean(dim=1, keepdim=True)
    return (difference * mask).sum() / mask.sum().clamp_min(1.0)
