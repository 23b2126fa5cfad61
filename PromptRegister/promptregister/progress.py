"""The two kinds of progress report, each with one name."""

from __future__ import annotations

from typing import Callable

StageProgress = Callable[[str, float], None]
"""progress(stage, fraction): what is being done now, and how far along it is (0 to 1). Registration, fitting
and pair finding report this way; a GUI shows the stage and a bar."""

CountProgress = Callable[[int, int], None]
"""progress(done, total): how many of a known number of items are finished (slices embedded, pairs of a
cohort)."""
