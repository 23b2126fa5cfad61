"""Surviving GPU out-of-memory: batches that halve until they fit (the device itself: promptregister.device)."""

from __future__ import annotations

from typing import Callable, List, Sequence, TypeVar

import torch

T = TypeVar("T")


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors."""
    if isinstance(error, getattr(torch.cuda, "OutOfMemoryError", ())):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def run_in_batches(items: Sequence[T], batch_size: int, run: Callable[[Sequence[T]], List],
                   on_retry: Callable[[str], None] = lambda message: None) -> List:
    """Apply `run` to consecutive batches; on out-of-memory halve the batch and retry, down to 1.

    `on_retry` receives a message saying what happened, so the user learns why
    it got slower.
    """
    results: List = []
    start = 0
    size = max(1, int(batch_size))
    while start < len(items):
        chunk = items[start:start + size]
        try:
            results.extend(run(chunk))
        except Exception as error:  # noqa: BLE001 - only OOM is handled, the rest re-raised
            if not is_out_of_memory(error) or size == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            size = max(1, size // 2)
            on_retry(f"out of memory with a batch of {len(chunk)} slices; retrying with {size}")
            continue
        start += len(chunk)
    return results
