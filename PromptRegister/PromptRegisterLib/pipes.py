"""Let the threads that read the worker's pipes run inside Slicer.

The worker client reads the worker's stdout and stderr on Python threads. Slicer does not turn on PythonQt's
thread support (PythonQt::setEnableThreadSupport is never called), so while Slicer's event loop idles in C++ the
main thread keeps the GIL and those threads do not run: the worker's output is not read, and once a pipe's buffer
is full (about 4 KiB on Windows, 64 KiB on Linux) the worker blocks on its next write. They get the GIL when
Python code runs on the main thread (the interpreter hands it over to a thread that has waited its switch
interval) or waits. So a timer ticks while a worker is alive, not only during a registration, and each tick
waits a moment (`let_readers_run`) so that the readers have their turn.
"""

from __future__ import annotations

import time

READER_SLICE_SECONDS = 0.002
"""How long each tick gives the reader threads: at a tick every 100 ms, 2 % of the main thread."""

TICK_MS = 100
"""The interval of the panel's pipe timer while a worker is alive."""


def let_readers_run(seconds: float = READER_SLICE_SECONDS) -> None:
    """Release the GIL for a moment so the pipe readers can take it (time.sleep releases it)."""
    time.sleep(seconds)
