"""Process set-up for heavy commands: run PyTorch with tcmalloc when it is installed.

On Linux, glibc's malloc returns PyTorch's large temporaries to the system and
faults them back in on every layer, which roughly doubles SAM encoder time on
CPU (docs/benchmarks.md). tcmalloc must be loaded before Python starts, so the
CLI and the worker re-execute themselves once with LD_PRELOAD set. Opt out with
PROMPTREGISTER_TCMALLOC=0. Install it with `apt-get install libtcmalloc-minimal4`
(Debian/Ubuntu) or `dnf install gperftools-libs` (Fedora/RHEL).
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

SWITCH_ENV = "PROMPTREGISTER_TCMALLOC"
_ACTIVE_ENV = "PROMPTREGISTER_TCMALLOC_ACTIVE"
_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
)


def tcmalloc_library() -> Optional[str]:
    """Path of libtcmalloc_minimal on this machine, or None."""
    for candidate in _CANDIDATES:
        if Path(candidate).exists():
            return candidate
    found = ctypes.util.find_library("tcmalloc_minimal")
    return found if found and os.path.isabs(found) else None


def tcmalloc_loaded() -> bool:
    """True when this process already runs with tcmalloc preloaded."""
    return "tcmalloc" in os.environ.get("LD_PRELOAD", "")


def reexec_with_tcmalloc(module: str, argv: Sequence[str]) -> None:
    """Replace this process by `python -m module argv...` with tcmalloc preloaded, when that helps.

    Returns normally (doing nothing) off Linux, when disabled, when already
    active, or when tcmalloc is not installed.
    """
    if not sys.platform.startswith("linux") or os.environ.get(SWITCH_ENV, "1") == "0":
        return
    if tcmalloc_loaded() or os.environ.get(_ACTIVE_ENV):
        return
    library = tcmalloc_library()
    if library is None:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = library + (":" + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
    env[_ACTIVE_ENV] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)


if __name__ == "__main__":  # `python -m promptregister.runtime` reports the allocator in use
    print(f"tcmalloc library: {tcmalloc_library() or 'not installed'}; loaded in this process: {tcmalloc_loaded()}")
