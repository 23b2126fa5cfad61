"""Per-user folders for downloaded weights and cached embeddings."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def user_cache_dir() -> Path:
    """Root of PromptRegister's cache: $PROMPTREGISTER_CACHE_DIR, else the platform's user cache folder."""
    explicit = os.environ.get("PROMPTREGISTER_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "promptregister"


def weights_cache_dir() -> Path:
    """Where fetched checkpoints are kept."""
    return user_cache_dir() / "weights"


def embeddings_cache_dir() -> Path:
    """Where slice embeddings are kept between runs."""
    return user_cache_dir() / "embeddings"
