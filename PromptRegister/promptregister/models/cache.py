"""Slice embeddings kept in memory (bounded LRU) and on disk.

An embedding is a pure function of the slice's pixels, the model weights and
the preprocessing, so the key hashes exactly those: the uint8 RGB slice (which
already reflects the intensity window), the segmenter's identity string (model
name, checkpoint SHA-256, preprocessing parameters) and the cache format
version. Disk entries are written to a temporary file and renamed; an entry
that fails to load or whose payload digest does not match is deleted and
recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .grid import EmbeddingGrid

FORMAT_VERSION = "1"


@dataclass
class CacheStats:
    """Counters, for tests, logs and benchmarks."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    corrupt: int = 0


def _grid_to_array(grid: EmbeddingGrid) -> np.ndarray:
    return np.array([*grid.image_size, *grid.input_size, grid.model_size, *grid.shape], dtype=np.int64)


def _grid_from_array(values: np.ndarray) -> EmbeddingGrid:
    v = [int(x) for x in values]
    return EmbeddingGrid((v[0], v[1]), (v[2], v[3]), v[4], (v[5], v[6]))


class EmbeddingCache:
    """Two-level cache of (features, grid) by content key.

    Arguments:
        memory_bytes: bound on the feature bytes held in memory (LRU eviction).
        disk_dir: folder for persistent entries; None keeps the cache in memory only.
    """

    def __init__(self, memory_bytes: int = 2 << 30, disk_dir: Optional[os.PathLike] = None):
        self.memory_bytes = int(memory_bytes)
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        self._memory: "OrderedDict[str, Tuple[np.ndarray, EmbeddingGrid]]" = OrderedDict()
        self._held = 0
        self.stats = CacheStats()

    @staticmethod
    def key(image: np.ndarray, identity: str) -> str:
        """Content key of one slice for one model and preprocessing."""
        image = np.ascontiguousarray(image)
        digest = hashlib.sha256()
        digest.update(f"v{FORMAT_VERSION}|{identity}|{image.shape}|{image.dtype.str}|".encode())
        digest.update(image.tobytes())
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        assert self.disk_dir is not None
        return self.disk_dir / key[:2] / f"{key}.npz"

    def get(self, key: str) -> Optional[Tuple[np.ndarray, EmbeddingGrid]]:
        """Features (C, rows, cols) float32 and grid for `key`, or None."""
        if key in self._memory:
            self._memory.move_to_end(key)
            self.stats.memory_hits += 1
            return self._memory[key]
        if self.disk_dir is not None:
            entry = self._read(key)
            if entry is not None:
                self.stats.disk_hits += 1
                self._remember(key, *entry)
                return entry
        self.stats.misses += 1
        return None

    def put(self, key: str, features: np.ndarray, grid: EmbeddingGrid) -> None:
        """Store an entry in memory and, when configured, on disk."""
        features = np.ascontiguousarray(features, dtype=np.float32)
        self._remember(key, features, grid)
        if self.disk_dir is not None:
            self._write(key, features, grid)

    def clear_memory(self) -> None:
        """Drop the in-memory level (the disk level stays)."""
        self._memory.clear()
        self._held = 0

    def _remember(self, key: str, features: np.ndarray, grid: EmbeddingGrid) -> None:
        if key in self._memory:
            self._held -= self._memory.pop(key)[0].nbytes
        if features.nbytes > self.memory_bytes:
            return
        self._memory[key] = (features, grid)
        self._held += features.nbytes
        while self._held > self.memory_bytes and self._memory:
            _, (old, _) = self._memory.popitem(last=False)
            self._held -= old.nbytes

    @staticmethod
    def _digest(features: np.ndarray) -> str:
        return hashlib.sha256(features.tobytes()).hexdigest()

    def _write(self, key: str, features: np.ndarray, grid: EmbeddingGrid) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.stem}.partial-{uuid.uuid4().hex[:8]}.npz")
            try:
                with open(temporary, "wb") as handle:
                    np.savez(handle, features=features, grid=_grid_to_array(grid),
                             key=np.frombuffer(key.encode(), dtype=np.uint8),
                             digest=np.frombuffer(self._digest(features).encode(), dtype=np.uint8))
                os.replace(temporary, path)
            finally:
                if temporary.exists():
                    temporary.unlink()
        except OSError:
            pass  # a read-only or full disk only costs speed, never correctness

    def _read(self, key: str) -> Optional[Tuple[np.ndarray, EmbeddingGrid]]:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                features = np.ascontiguousarray(data["features"], dtype=np.float32)
                stored_key = data["key"].tobytes().decode()
                digest = data["digest"].tobytes().decode()
                grid = _grid_from_array(data["grid"])
            if stored_key != key or digest != self._digest(features):
                raise ValueError("key or payload digest mismatch")
            return features, grid
        except Exception:  # noqa: BLE001 - any unreadable entry is treated the same way
            self.stats.corrupt += 1
            try:
                path.unlink()
            except OSError:
                pass
            return None
