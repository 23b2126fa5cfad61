"""SHA-256 of files, streamed: weights verification, file transfers to a remote worker, batch done-markers.
Standard library only, so the Slicer side can use it."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Dict, Tuple

_KNOWN: Dict[Tuple[str, int, int], str] = {}
_LOCK = threading.Lock()


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def known_sha256(path: Path) -> str:
    """sha256_of, remembered by (path, size, modification time): a file that has not changed is read once (an
    atlas shared by 300 pairs of a cohort; a volume a remote worker sends in chunks)."""
    resolved = Path(path).resolve()
    status = resolved.stat()
    key = (str(resolved), status.st_size, status.st_mtime_ns)
    with _LOCK:
        if key in _KNOWN:
            return _KNOWN[key]
    digest = sha256_of(resolved)
    with _LOCK:
        _KNOWN[key] = digest
    return digest
