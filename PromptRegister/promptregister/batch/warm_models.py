"""Models kept warm in each worker process: loaded by the first pair that needs them, reused by the rest.

A Dask worker process lives for the whole run and runs its tasks one after another, so a module-level model
pool (job.ModelPool, the one the worker and the command line use) is what "models load once per worker, not
once per pair" needs. Loads are timed; the pair that paid for them says so in its record (`model_load_s`), which
is how the summary (and the tests) can tell.
"""

from __future__ import annotations

import os
import socket

from ..job import ModelPool
from .settings import BatchSettings

POOL = ModelPool()
"""This process's warm models (each segmenter with job.EMBEDDING_CACHE_BYTES of embeddings)."""


def worker_name() -> str:
    """host:pid of the process running a pair (a Dask worker, or this process in-process)."""
    return f"{socket.gethostname()}:{os.getpid()}"


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
HEAP_ARRAYS_UP_TO = 32 * 1024 ** 2
"""glibc's own ceiling for its adaptive mmap threshold on 64-bit machines."""
_ALLOCATOR_TUNED = False


def tune_allocator() -> None:
    """Undo, in this process, what a Dask worker's environment does to glibc's allocator.

    Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536 (distributed.nanny.pre-spawn-environ). That fixes
    glibc's mmap threshold at 128 KiB, so every array above it is a fresh mmap whose pages fault in one by one
    and are unmapped when freed: a pair then spent half its CPU time in the kernel and took 3.5 times as long
    (bench/batch.py, docs/benchmarks.md). Our own LocalCluster leaves the variable out; on a scheduler someone
    else started, this restores arrays up to 32 MiB to the heap. A no-op where the C library is not glibc (or
    tcmalloc is preloaded: then glibc's malloc is not the one in use)."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    _ALLOCATOR_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, HEAP_ARRAYS_UP_TO)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * HEAP_ARRAYS_UP_TO)
    except (OSError, AttributeError):  # not glibc
        pass


def task_device(settings: BatchSettings) -> str:
    """The device for this process's pairs: on a local GPU cluster each worker has its own GPU (worker names are
    0, 1, ...); elsewhere the settings' device."""
    if settings.device not in ("auto", "cuda"):
        return settings.device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):  # not inside a Dask worker
        return settings.device
    import torch

    if isinstance(name, int) and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return f"cuda:{name % torch.cuda.device_count()}"
    return settings.device


def held() -> int:
    """How many models this process holds warm."""
    return len(POOL)


def forget() -> None:
    """Drop the warm models (tests that count loads in this process)."""
    POOL.clear()
