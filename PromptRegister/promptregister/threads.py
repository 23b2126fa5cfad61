"""How PromptRegister's processes use the CPU when they share it with other work.

PyTorch runs one OpenMP thread per core, and every operation ends at a barrier where the threads wait for
the slowest. On a shared machine (Slicer rendering, a second registration, a test run) one of them is
often descheduled, so every one of the thousands of operations in a fit waits for a scheduler time slice:
a 2 s fit took 133 s beside another CPU-bound job (../shared/NOTES.md, "CPU contention"). Making waiting
threads sleep (OMP_WAIT_POLICY=PASSIVE) measured worse still (bench/contention.py). What works is not to
run more threads than there are free cores:

- `ThreadBudget` looks at /proc/stat and at this process's own CPU time, at most every `interval_s`, and
  sets PyTorch's intra-op threads to the cores the other processes left free (at least one, at most what
  PyTorch started with or OMP_NUM_THREADS asked for). The dense fit asks it every iteration; the cost is
  two small file reads per interval.
- onnxruntime's thread count is fixed when a session opens, so its waiting threads are told not to spin
  ("session.intra_op.allow_spinning" = "0", `onnx_session_options`): as fast idle, faster when shared.

PROMPTREGISTER_THREAD_POLICY=off keeps the libraries' own behaviour (bench/contention.py measures both).
A fit is bit-for-bit reproducible (same seed, same result) only at the same thread count, because sums
split over threads round differently: turn the policy off when that matters more than speed.
Where /proc/stat does not exist (macOS, Windows) the thread count is left alone.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Optional, Tuple

POLICY_VARIABLE = "PROMPTREGISTER_THREAD_POLICY"
"""Set to "off" to keep PyTorch's and onnxruntime's defaults."""

ONNX_SPINNING_ENTRY = "session.intra_op.allow_spinning"
PROC_STAT = Path("/proc/stat")


def policy_on() -> bool:
    """False when the user (or a benchmark) turned the policy off."""
    return os.environ.get(POLICY_VARIABLE, "on").strip().lower() not in ("off", "0", "false", "no")


def onnx_session_options(ort):
    """onnxruntime SessionOptions whose intra-op threads sleep instead of spinning (when the policy is on), and
    no more of them than OMP_NUM_THREADS asks for: onnxruntime ignores that variable and starts one thread per
    core, so N batch workers (each given its share of the cores through it) would otherwise run N times too
    many."""
    options = ort.SessionOptions()
    if policy_on():
        options.add_session_config_entry(ONNX_SPINNING_ENTRY, "0")
        asked = os.environ.get("OMP_NUM_THREADS", "").strip()
        if asked.isdigit() and int(asked) > 0:
            options.intra_op_num_threads = int(asked)
    return options


def _machine_times() -> Optional[Tuple[float, float]]:
    """(busy, total) CPU time of the whole machine in clock ticks, summed over cores; None without /proc."""
    try:
        fields = PROC_STAT.read_text().split("\n", 1)[0].split()[1:9]
    except OSError:
        return None
    values = [float(v) for v in fields]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values)
    return total - idle, total


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def others_busy_cores(before: Tuple[float, float, float, float], after: Tuple[float, float, float, float]) -> float:
    """Cores other processes kept busy between two samples (busy ticks, total ticks, own CPU s, wall s)."""
    busy0, total0, own0, wall0 = before
    busy1, total1, own1, wall1 = after
    if total1 <= total0 or wall1 <= wall0:
        return 0.0
    online = os.cpu_count() or 1
    machine = (busy1 - busy0) / (total1 - total0) * online  # cores busy, ours included
    own = (own1 - own0) / (wall1 - wall0)
    return max(0.0, machine - own)


def threads_for(free_cores: float, most: int) -> int:
    """Threads to run with `free_cores` left by others: a core counts when at least half of it is free."""
    return max(1, min(most, int(math.floor(free_cores + 0.5))))


class ThreadBudget:
    """Keeps PyTorch's thread count within the cores other processes leave free (see the module docstring)."""

    def __init__(self, interval_s: float = 0.5) -> None:
        import torch

        self.torch = torch
        self.interval_s = interval_s
        self.enabled = policy_on() and _machine_times() is not None
        self.most = torch.get_num_threads()
        try:
            self.usable = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            self.usable = os.cpu_count() or 1
        self.threads = self.most
        self._last = self._sample() if self.enabled else None

    @staticmethod
    def _sample() -> Optional[Tuple[float, float, float, float]]:
        """(machine busy ticks, machine total ticks, own CPU s, wall s), or None if /proc/stat went away."""
        machine = _machine_times()
        return None if machine is None else (machine[0], machine[1], _own_cpu_seconds(), time.monotonic())

    def adapt(self) -> int:
        """Re-measure when the interval has passed; returns the thread count now in force."""
        if self._last is None or time.monotonic() - self._last[3] < self.interval_s:
            return self.threads
        now = self._sample()
        if now is None:
            return self.threads
        others = others_busy_cores(self._last, now)
        self._last = now
        wanted = threads_for(self.usable - others, self.most)
        if wanted != self.threads:
            self.torch.set_num_threads(wanted)
            self.threads = wanted
        return self.threads

    def restore(self) -> None:
        """Give PyTorch back the thread count it had (call when the work ends)."""
        if self.enabled and self.threads != self.most:
            self.torch.set_num_threads(self.most)
            self.threads = self.most
