"""The compute device, chosen one way for the segmenters and the dense fit."""

from __future__ import annotations

import torch

from .errors import PromptRegisterError
from .options.names import DEVICE_CHOICES



def resolve_device(name: str = "auto", auto_mps: bool = True) -> torch.device:
    """'auto' -> CUDA, else Apple MPS (when `auto_mps`), else CPU; an explicit choice that is unavailable is an
    error, never a silent fallback. The dense fit passes auto_mps=False: on a Mac the segmenter runs on MPS and
    the fit on the CPU (the fit's float64 steps have no MPS kernels)."""
    name = (name or "auto").lower()
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise PromptRegisterError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if has_mps and auto_mps else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PromptRegisterError(
            "device 'cuda' was asked for but PyTorch sees no CUDA GPU (driver missing, or a CPU-only torch "
            "build); use --device cpu or auto")
    if name == "mps" and not has_mps:
        raise PromptRegisterError("device 'mps' was asked for but Apple's Metal backend is not available")
    return torch.device(name)
