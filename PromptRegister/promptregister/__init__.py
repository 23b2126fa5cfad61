"""PromptRegister engine: prompt-driven, training-free image registration.

The engine never imports Slicer. Physical space is ITK's LPS in millimetres;
a displacement field lives on the fixed grid and maps a fixed point p to the
moving point p + u(p) (ITK's resampling convention).
"""

from typing import Any

__version__ = "0.1.0"

from .errors import PromptRegisterError  # noqa: F401,E402

_LAZY = {"Geometry": "geometry", "Volume": "volume"}
"""Imported on first use (they load SimpleITK), so that `promptregister --help` and a Ctrl-C in the command's
first second do not wait on, or interrupt, those imports."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
