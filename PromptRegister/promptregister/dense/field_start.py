"""A displacement field as the dense stage's starting map: prompts refine an image registration.

The dense stage fits T(p) = S(p) + v(p), a start map S and a B-spline v (fit.py). S is usually linear (linear.py).
When prompts refine an image registration, S is that registration's whole map, so v is what the prompts add: the
fit still runs coarse to fine (a large correction is found at the coarse levels), the regulariser penalises only
what the prompts change, and where no pair pulls, v stays near zero and the images' alignment is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy import ndimage

from ..geometry import Geometry
from .linear import LinearFit


@dataclass
class FieldStart(LinearFit):
    """S(p) = p + u(p), u a displacement field (k, j, i, 3) in mm on the fixed grid, interpolated linearly (held at
    the edge). `matrix` and `translation` are the field's own linear part (the folding penalty and inverse
    mapping start from them)."""

    displacement: Optional[np.ndarray] = field(default=None, repr=False)
    geometry: Optional[Geometry] = field(default=None, repr=False)

    @classmethod
    def from_fit(cls, fit) -> "FieldStart":
        """The whole map of a FitResult (its linear part and B-spline) as a start map."""
        return cls(fit.linear.matrix, fit.linear.translation, "image registration",
                   "starts from the image registration's field", fit.field, fit.fixed_geometry)

    def apply(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=float)
        flat = points.reshape(-1, 3)
        coordinates = self.geometry.physical_to_index(flat)[:, ::-1].T  # (k, j, i) rows
        moved = flat + np.stack([ndimage.map_coordinates(self.displacement[..., axis], coordinates, order=1,
                                                         mode="nearest") for axis in range(3)], axis=-1)
        return moved.reshape(points.shape)
