"""Checks shared by the option classes: numbers that must be finite, whole, positive or within a range.

Each raises PromptRegisterError naming the option and what it takes, so a value from the command line, a worker
request or a batch manifest is refused before any work starts.
"""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from typing import Any, Optional

from ..errors import PromptRegisterError


def require_finite_numbers(options: Any) -> None:
    """Every float or int field of a dataclass (and of dataclasses inside it) is a finite number: NaN or infinity
    from a worker request or `--smoothness nan` would otherwise surface later as a diverged optimisation."""
    for item in fields(options):
        value = getattr(options, item.name)
        if is_dataclass(value):
            require_finite_numbers(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise PromptRegisterError(f"{item.name} must be a finite number; got {value!r}")


def require_whole(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < minimum:
        raise PromptRegisterError(f"{name} must be a whole number, at least {minimum}; got {value!r}")


def require_range(name: str, value: Any, low: Optional[float], high: Optional[float], what: str,
                  low_open: bool = False) -> None:
    """low <= value <= high (low < value when `low_open`); `what` says in words what the option is."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    fine = number and math.isfinite(value)
    if fine and low is not None:
        fine = value > low if low_open else value >= low
    if fine and high is not None:
        fine = value <= high
    if not fine:
        raise PromptRegisterError(f"{name} is {what}; got {value!r}")
