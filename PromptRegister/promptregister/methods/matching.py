"""Matching regions by their prototypes, and the mask filters the methods share.

All functions are pure: arrays in, arrays (or index lists) out.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of a (n, C) with every row of b (m, C): (n, m); 0 for zero vectors."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    norm_a = np.linalg.norm(a, axis=1, keepdims=True)
    norm_b = np.linalg.norm(b, axis=1, keepdims=True)
    return (a / np.maximum(norm_a, 1e-12)) @ (b / np.maximum(norm_b, 1e-12)).T


def greedy_pairs(similarity: np.ndarray, threshold: float, one_to_many: bool = False) -> List[Tuple[int, int, float]]:
    """Pairs (row, col, similarity) above `threshold`, most similar first.

    One-to-one (default): repeatedly take the most similar remaining pair and
    retire its row and column. One-to-many: every row keeps its best column
    (columns may repeat).
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.size == 0:
        return []
    if one_to_many:
        best = np.argmax(similarity, axis=1)
        pairs = [(r, int(c), float(similarity[r, c])) for r, c in enumerate(best) if similarity[r, c] > threshold]
        return sorted(pairs, key=lambda pair: -pair[2])
    order = np.argsort(-similarity, axis=None, kind="stable")
    rows, cols = np.unravel_index(order, similarity.shape)
    used_rows, used_cols, pairs = set(), set(), []
    for r, c in zip(rows.tolist(), cols.tolist()):
        value = float(similarity[r, c])
        if value <= threshold:
            break
        if r in used_rows or c in used_cols:
            continue
        used_rows.add(r)
        used_cols.add(c)
        pairs.append((r, c, value))
    return pairs


def area_filter(masks: np.ndarray, min_fraction: float, max_fraction: float) -> np.ndarray:
    """Indices of (n, H, W) masks whose area is within [min_fraction, max_fraction] of the slice."""
    if len(masks) == 0:
        return np.zeros(0, dtype=int)
    fractions = masks.reshape(len(masks), -1).mean(axis=1)
    return np.flatnonzero((fractions >= min_fraction) & (fractions <= max_fraction))


def overlap_filter(masks: np.ndarray, scores: Sequence[float], max_overlap: float = 0.8) -> np.ndarray:
    """Indices of masks left after dropping the smaller of any two masks that share more than
    max_overlap of the smaller one's area (the larger is kept; ties keep the higher score)."""
    n = len(masks)
    if n == 0:
        return np.zeros(0, dtype=int)
    flat = masks.reshape(n, -1).astype(np.float32)
    areas = flat.sum(axis=1)
    shared = flat @ flat.T
    order = sorted(range(n), key=lambda i: (-areas[i], -float(scores[i])))
    kept: List[int] = []
    for i in order:
        if all(shared[i, j] <= max_overlap * min(areas[i], areas[j]) for j in kept):
            kept.append(i)
    return np.array(sorted(kept), dtype=int)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
