"""What the dense stage returns: the field, the linear part, and what each level and the repair did."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

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

    def to_moving(self, points: np.ndarray) -> np.ndarray:
        """Fixed LPS points (n, 3) -> moving LPS points: p + u(p), u interpolated linearly (held at the edge)."""
        points = np.atleast_2d(np.asarray(points, dtype=float))
        index = self.fixed_geometry.physical_to_index(points)  # (n, 3) continuous (i, j, k)
        coordinates = index[:, ::-1].T  # (k, j, i) rows for map_coordinates
        displacement = np.stack([ndimage.map_coordinates(self.field[..., a], coordinates, order=1, mode="nearest")
                                 for a in range(3)], axis=-1)
        return points + displacement

    def to_fixed(self, points: np.ndarray, iterations: int = 100, tolerance_mm: float = 1e-4) -> np.ndarray:
        """Moving LPS points (n, 3) -> the fixed points this transform maps onto them (its inverse, found by
        fixed-point iteration q <- q + (p - T(q)), from the linear part's inverse). Where a click on the moving
        image lands in the fixed one, so the matching fixed prompt is searched there."""
        targets = np.atleast_2d(np.asarray(points, dtype=float))
        inverse = np.linalg.inv(self.linear.matrix)
        estimate = (targets - self.linear.translation) @ inverse.T
        for _ in range(iterations):
            error = targets - self.to_moving(estimate)
            estimate = estimate + error @ inverse.T
            if np.abs(error).max() < tolerance_mm:
                break
        return estimate

    def summary(self) -> Dict[str, object]:
        return {
            "linear_model": self.linear.model,
            "linear_note": self.linear.note,
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "levels": [asdict(level) for level in self.levels],
            "unfolded": self.unfolded.as_dict(),
        }
