"""Read landmark point lists (CSV in LPS or RAS, Slicer .fcsv in RAS) as LPS mm."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from .errors import PromptRegisterError

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def read_landmarks(path: str | os.PathLike, space: str = "lps") -> np.ndarray:
    """Points (N, 3) in LPS mm.

    Arguments:
        path: .csv/.txt with one point per row (x, y, z first three numeric columns;
            a header row is skipped), or a Slicer .fcsv markups file (always RAS).
        space: 'lps' or 'ras', the space of the numbers in a CSV file.
    """
    path = Path(path)
    if not path.exists():
        raise PromptRegisterError(f"Landmark file not found: {path}.")
    if space not in ("lps", "ras"):
        raise PromptRegisterError(f"Landmark space must be 'lps' or 'ras'; got {space!r}.")
    columns = slice(1, 4) if path.suffix.lower() == ".fcsv" else slice(0, 3)
    if path.suffix.lower() == ".fcsv":
        space = "ras"
    points = []
    with path.open(newline="") as handle:
        for row in csv.reader(line for line in handle if not line.lstrip().startswith("#")):
            if not row or not "".join(row).strip():
                continue
            try:
                points.append([float(value) for value in row[columns]])
            except (ValueError, IndexError):
                if points:  # a header is only allowed before the first point
                    raise PromptRegisterError(f"{path}: cannot read a point from the row {row!r}.") from None
    if not points or any(len(p) != 3 for p in points):
        raise PromptRegisterError(f"{path} holds no x, y, z points.")
    array = np.asarray(points, dtype=float)
    return array @ RAS_TO_LPS if space == "ras" else array
