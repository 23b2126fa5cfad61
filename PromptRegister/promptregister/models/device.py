"""Choosing the compute device and surviving GPU out-of-memory."""

from __future__ import annotations

from typing import Callable, List, Sequence, TypeVar

import torch

from ..errors import PromptRegisterError

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")

T = TypeVar("T")


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA, else Apple MPS, else CPU; an explicit choice that is unavailable is an error."""
    name = (name or "auto").lower()
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise PromptRegisterError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if has_mps else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PromptRegisterError(
            "device 'cuda' was asked for but PyTorch sees no CUDA GPU (driver missing, or a CPU-only torch "
            "build); use --device cpu or auto"
        )
    if name == "mps" and not has_mps:
        raise PromptRegisterError("device 'mps' was asked for but Apple's Metal backend is not available")
    return torch.device(name)


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
