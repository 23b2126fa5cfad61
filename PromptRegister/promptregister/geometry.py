"""Image grid geometry in ITK's LPS physical space (millimetres).

Index order everywhere in this module is ITK's (i, j, k); numpy arrays of a
volume are indexed (k, j, i), as SimpleITK's GetArrayFromImage returns them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

from .errors import PromptRegisterError

Vec3 = Tuple[float, float, float]


@dataclass(frozen=True)
class Geometry:
    """Grid of a 3D image: where each voxel centre lies in LPS millimetres.

    Attributes:
        size: number of voxels along (i, j, k).
        spacing: voxel size in mm along (i, j, k).
        origin: LPS position in mm of the centre of voxel (0, 0, 0).
        direction: 3x3 row-major matrix whose columns are the LPS unit vectors
            of the i, j and k axes (ITK's Direction).
    """

    size: Tuple[int, int, int]
    spacing: Vec3
    origin: Vec3
    direction: Tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.size) != 3 or len(self.spacing) != 3 or len(self.origin) != 3:
            raise PromptRegisterError("A geometry needs 3 sizes, 3 spacings and a 3D origin.")
        if len(self.direction) != 9:
            raise PromptRegisterError("A geometry's direction must be a 3x3 matrix (9 numbers).")
        if min(self.size) < 1:
            raise PromptRegisterError(f"Image size {self.size} has an empty axis.")
        if not all(np.isfinite(self.spacing)) or min(self.spacing) <= 0:
            raise PromptRegisterError(f"Voxel spacing {self.spacing} must be positive and finite.")
        if abs(np.linalg.det(self.direction_matrix)) < 1e-6:
            raise PromptRegisterError("The image direction matrix is singular; the header is corrupt.")

    # -- construction -------------------------------------------------------
    @classmethod
    def create(
        cls,
        size: Sequence[int],
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        origin: Sequence[float] = (0.0, 0.0, 0.0),
        direction: Sequence[float] | np.ndarray = (1, 0, 0, 0, 1, 0, 0, 0, 1),
    ) -> "Geometry":
        """Build a geometry from any sequences (numbers are stored as Python floats)."""
        return cls(
            tuple(int(s) for s in size),  # type: ignore[arg-type]
            tuple(float(s) for s in spacing),  # type: ignore[arg-type]
            tuple(float(o) for o in origin),  # type: ignore[arg-type]
            tuple(float(d) for d in np.asarray(direction, dtype=float).ravel()),
        )

    # -- derived quantities -------------------------------------------------
    @property
    def shape(self) -> Tuple[int, int, int]:
        """numpy shape (k, j, i) of arrays on this grid."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def index_to_physical_matrix(self) -> np.ndarray:
        """3x3 matrix M with p = origin + M @ (i, j, k)."""
        return self.direction_matrix @ np.diag(self.spacing)

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel in mm^3."""
        return float(np.prod(self.spacing))

    @property
    def num_voxels(self) -> int:
        return int(np.prod(self.size))

    def index_to_physical(self, index: np.ndarray) -> np.ndarray:
        """Map continuous (i, j, k) indices, shape (..., 3), to LPS mm, shape (..., 3)."""
        index = np.asarray(index, dtype=float)
        return index @ self.index_to_physical_matrix.T + np.asarray(self.origin)

    def physical_to_index(self, point: np.ndarray) -> np.ndarray:
        """Map LPS points in mm, shape (..., 3), to continuous (i, j, k) indices."""
        point = np.asarray(point, dtype=float)
        inverse = np.linalg.inv(self.index_to_physical_matrix)
        return (point - np.asarray(self.origin)) @ inverse.T

    def voxel_centres(self) -> np.ndarray:
        """LPS position of every voxel centre, shape (k, j, i, 3)."""
        k, j, i = np.meshgrid(*(np.arange(n, dtype=float) for n in self.shape), indexing="ij")
        return self.index_to_physical(np.stack([i, j, k], axis=-1))

    def is_close(self, other: "Geometry", tolerance_mm: float = 1e-3) -> bool:
        """Same size and voxel positions within tolerance_mm everywhere."""
        if self.size != other.size:
            return False
        corners = np.array(
            [[a, b, c] for a in (0, self.size[0] - 1) for b in (0, self.size[1] - 1) for c in (0, self.size[2] - 1)],
            dtype=float,
        )
        return bool(np.abs(self.index_to_physical(corners) - other.index_to_physical(corners)).max() <= tolerance_mm)

    def contains(self, point) -> bool:
        """Whether an LPS point (mm) lies within the image's extent, voxel edges included."""
        index = self.physical_to_index(np.asarray(point, float))
        return bool(np.all(index >= -0.5) and np.all(index <= np.asarray(self.size) - 0.5))

    def bounds(self) -> np.ndarray:
        """(2, 3) array: the lowest and highest LPS coordinate of the image's extent (voxel edges, not centres)."""
        corners = np.array([[a, b, c] for a in (-0.5, self.size[0] - 0.5) for b in (-0.5, self.size[1] - 0.5)
                            for c in (-0.5, self.size[2] - 0.5)])
        points = self.index_to_physical(corners)
        return np.stack([points.min(axis=0), points.max(axis=0)])

    def describe_bounds(self) -> str:
        """The extent in LPS and in Slicer's RAS (x and y negated), for messages about points outside the image."""
        low, high = self.bounds()
        lps = ", ".join(f"{axis} {a:.1f} to {b:.1f}" for axis, a, b in zip("xyz", low, high))
        ras_low, ras_high = np.array([-high[0], -high[1], low[2]]), np.array([-low[0], -low[1], high[2]])
        ras = ", ".join(f"{axis} {a:.1f} to {b:.1f}" for axis, a, b in zip("xyz", ras_low, ras_high))
        return f"LPS {lps} mm; in Slicer's RAS {ras} mm"

    def describe(self) -> str:
        """One line for error messages: size, spacing and origin."""
        spacing = ", ".join(f"{s:g}" for s in self.spacing)
        origin = ", ".join(f"{o:.3g}" for o in self.origin)
        return f"size {self.size}, spacing ({spacing}) mm, origin ({origin}) mm"

    def to_dict(self) -> dict:
        return {"size": list(self.size), "spacing": list(self.spacing), "origin": list(self.origin), "direction": list(self.direction)}

    @classmethod
    def from_dict(cls, data: dict) -> "Geometry":
        return cls.create(data["size"], data["spacing"], data["origin"], data["direction"])


def require_same_grid(a: Geometry, b: Geometry, what_a: str, what_b: str) -> None:
    """Raise a clear error when two images that must share a grid do not."""
    if not a.is_close(b):
        raise PromptRegisterError(
            f"The {what_a} and the {what_b} are on different grids "
            f"({a.describe()} vs {b.describe()}). A label map must be on the grid of its image; "
            "resample it onto the image first (e.g. `promptregister warp --labels` with an identity transform)."
        )
