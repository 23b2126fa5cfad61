"""Hugging Face hub model folders (the transformers GroundingDINOs): found locally, or fetched on request only.

A hub model is a folder, pinned in the registry to a commit (`Checkpoint.revision`) and to the SHA-256 of its
weight file. Nothing here reaches the network except `fetch_folder`, which `promptregister weights fetch`
calls: loading a detector never downloads, so a machine without the weights says so at once instead of waiting
on the hub.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from ..errors import PromptRegisterError
from .weights import Checkpoint, WeightsManager

ALLOW_PATTERNS = ["*.json", "*.txt", "*.safetensors", "*.md"]
"""What `fetch_folder` downloads: config, tokenizer, preprocessor and safetensors weights (never pickled .bin)."""


def cached_snapshot(manager: WeightsManager, checkpoint: Checkpoint) -> Optional[Path]:
    """A copy already in the Hugging Face cache whose weight file matches the pin (the pinned commit first, then
    whatever `main` points to), or None. Reads the local cache only."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    seen = set()
    for revision in (checkpoint.revision, None):
        try:
            found = try_to_load_from_cache(checkpoint.architecture, checkpoint.weight_file or "model.safetensors",
                                           revision=revision)
        except Exception:  # noqa: BLE001 - a malformed repo id or revision is simply not cached
            continue
        if not isinstance(found, str) or found in seen:
            continue
        seen.add(found)
        folder = Path(found).parent
        try:
            manager.verify(checkpoint, folder)
        except PromptRegisterError:
            continue  # another revision with other weights: not the pinned model
        return folder
    return None


def fetch_folder(manager: WeightsManager, checkpoint: Checkpoint) -> Path:
    """Download a hub model folder at its pinned commit into the cache, check its weight file's SHA-256, and only
    then move it into place; a failed or mismatching download leaves nothing behind.

    Raises PromptRegisterError when downloads are off, the hub cannot be reached, or the weights do not match.
    """
    if not manager.allow_download:
        raise PromptRegisterError(manager.missing_message(checkpoint, suggest_fetch=False))
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise PromptRegisterError("huggingface_hub is missing; install the text extra: "
                                  "pip install 'promptregister[text]'") from None
    target = manager.cache_dir / checkpoint.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{checkpoint.file_name}.partial-", dir=target.parent))
    try:
        try:
            snapshot_download(checkpoint.architecture, revision=checkpoint.revision, local_dir=str(staging),
                              allow_patterns=ALLOW_PATTERNS)
        except Exception as error:  # noqa: BLE001 - network and hub errors come in many types
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise PromptRegisterError(f"cannot download {checkpoint.architecture} from the hub ({first}). "
                                      + manager.missing_message(checkpoint, suggest_fetch=False)) from None
        try:
            manager.verify(checkpoint, staging)
        except PromptRegisterError as error:
            raise PromptRegisterError(f"the downloaded {checkpoint.name} (revision {checkpoint.revision}) was "
                                      f"discarded: {error}") from None
        shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's download bookkeeping
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
