"""Boolean masks as run lengths, so that an ROI pair travels inline in one protocol line.

The format is that of COCO's uncompressed RLE, over the C-order flattened (k, j, i) array: "counts" alternate
runs of False and True, starting with False (a mask that starts with True begins with a run of 0). A one-slice
ROI on a 256 x 256 x 96 grid is a few hundred numbers.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np

from ..errors import PromptRegisterError


def encode_mask(mask: np.ndarray) -> Dict[str, Any]:
    """{"shape": [k, j, i], "counts": [...]} of a boolean mask."""
    flat = np.ascontiguousarray(mask, dtype=bool).ravel()
    if flat.size == 0:
        return {"shape": list(mask.shape), "counts": []}
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"shape": [int(n) for n in mask.shape], "counts": [int(n) for n in counts]}


def decode_mask(data: Dict[str, Any], shape: Sequence[int] = None) -> np.ndarray:
    """The boolean mask of encode_mask's output; `shape`, when given, must match the stored one."""
    try:
        stored = tuple(int(n) for n in data["shape"])
        counts = np.asarray(data["counts"], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        raise PromptRegisterError('a mask must be {"shape": [k, j, i], "counts": [run lengths]}') from None
    if shape is not None and tuple(shape) != stored:
        raise PromptRegisterError(f"a mask of shape {list(stored)} was given for a grid of shape {list(shape)}")
    size = int(np.prod(stored))
    if (counts < 0).any() or int(counts.sum()) != size:
        raise PromptRegisterError(f"the mask's run lengths add up to {int(counts.sum())}, not its {size} voxels")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(stored)
