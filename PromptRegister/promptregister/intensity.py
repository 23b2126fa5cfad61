"""Intensities to the uint8 RGB that 2D foundation models expect.

The window is computed once over the whole volume (not per slice), so a
structure has the same grey level on every slice of a volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from .errors import PromptRegisterError

#: CT windows as (level, width) in Hounsfield units.
CT_WINDOWS: Dict[str, Tuple[float, float]] = {
    "soft-tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}


@dataclass(frozen=True)
class IntensityWindow:
    """Linear map of [low, high] onto [0, 255], clipping outside."""

    low: float
    high: float

    @classmethod
    def from_percentiles(cls, array: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> "IntensityWindow":
        """Window between two percentiles of all finite voxels of a volume."""
        if not 0 <= lower < upper <= 100:
            raise PromptRegisterError(f"Percentiles must satisfy 0 <= lower < upper <= 100; got {lower}, {upper}.")
        values = np.asarray(array, dtype=np.float32)
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise PromptRegisterError("The volume has no finite intensities.")
        low, high = np.percentile(values, [lower, upper])
        if high <= low:  # a constant image: avoid dividing by zero
            high = low + 1.0
        return cls(float(low), float(high))

    @classmethod
    def ct_preset(cls, name: str) -> "IntensityWindow":
        if name not in CT_WINDOWS:
            raise PromptRegisterError(f"Unknown CT window {name!r}; choose one of {', '.join(CT_WINDOWS)}.")
        level, width = CT_WINDOWS[name]
        return cls(level - width / 2.0, level + width / 2.0)

    def to_uint8(self, array: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(array, dtype=np.float32) - self.low) * (255.0 / (self.high - self.low))
        return np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).round().astype(np.uint8)

    def to_rgb(self, plane: np.ndarray) -> np.ndarray:
        """A 2D slice as (rows, cols, 3) uint8, the grey level replicated."""
        grey = self.to_uint8(plane)
        return np.repeat(grey[..., None], 3, axis=-1)
