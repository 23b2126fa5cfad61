"""What every command prints with: a table of figures and progress bars (tqdm). The bottom of the command line
modules: it imports none of them."""

from __future__ import annotations

import sys
from typing import Callable, List


def table(header: List[str], rows: List[List[str]]) -> str:
    """Right-aligned columns under a header and a rule."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).rjust(width) for cell, width in zip(row, widths)) for row in [header] + rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


class ProgressBar:
    """tqdm bars driven by progress(stage, fraction) callbacks, one bar per stage; silent when quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.shown: tuple = ("", -1)

    def __enter__(self) -> Callable[[str, float], None]:
        return self.update

    def update(self, stage: str, fraction: float) -> None:
        if self.quiet:
            return
        percent = int(100 * min(max(fraction, 0.0), 1.0))
        if (stage, percent) == self.shown:
            return
        if stage != self.shown[0]:  # a new stage: the finished bar stays on screen, a new one starts
            from tqdm import tqdm

            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=100, desc=stage, file=sys.stderr,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")
        self.shown = (stage, percent)
        self.bar.n = percent
        self.bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

