"""What the dense stage returns: the field, the linear part, and what each level and the repair did."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..geometry import Geometry
from ..io.transforms import displacement_field_transform
from .linear import LinearFit
from .unfold import UnfoldReport


@dataclass
class LevelReport:
    level: int
    voxel_mm: Tuple[float, float, float]
    eval_shape: Tuple[int, int, int]
    band_points: int
    iterations: int
    loss_start: float
    loss_end: float
    stopped: str
    seconds: float


@dataclass
class FitResult:
    """Output of fit_transform.

    Attributes:
        field: displacement T(p) - p in LPS mm on the fixed grid, (k, j, i, 3), float64;
            includes the linear part.
        fixed_geometry: the grid of `field`.
        linear: the pre-alignment alone.
        levels: what each resolution level did.
        device: where the optimisation ran.
        unfolded: what the folding repair did (unfold.py); empty when it was off.
        parameters: the finest level's B-spline parameters (None without a non-rigid stage): the warm start of
            the next interactive fit (fit_transform's `initial`).
    """

    field: np.ndarray
    fixed_geometry: Geometry
    linear: LinearFit
    levels: List[LevelReport] = field(default_factory=list)
    device: str = "cpu"
    seconds: float = 0.0
    unfolded: UnfoldReport = field(default_factory=UnfoldReport)
    parameters: Optional[np.ndarray] = None

    def transform(self) -> sitk.DisplacementFieldTransform:
        """The ITK displacement-field transform (fixed -> moving, resampling convention)."""
        return displacement_field_transform(self.field, self.fixed_geometry)

    def summary(self) -> Dict[str, object]:
        return {
            "linear_model": self.linear.model,
            "linear_note": self.linear.note,
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "levels": [asdict(level) for level in self.levels],
            "unfolded": self.unfolded.as_dict(),
        }
