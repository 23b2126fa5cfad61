"""Install packages without freezing Slicer: commands run one after another in a background process, and the
panel's timer polls their output (slicer.util.pip_install blocks the GUI, and 5.6 to 5.10 have no non-blocking
form of it)."""

from __future__ import annotations

import collections
import subprocess
import threading
from typing import Deque, List, Optional, Sequence

from promptregister.worker.client import hidden_console


class BackgroundInstall:
    """Runs `commands` (argv lists) in order on a thread; stops at the first that fails.

    Poll `lines()` for new output and `finished` / `returncode` for the end; `failed_command` names the command
    that failed. A cancelled installation ends with `cancelled` true and no failed command (it did not fail).
    """

    def __init__(self, commands: Sequence[Sequence[str]]):
        if not commands:
            raise ValueError("nothing to install")
        self.commands = [list(command) for command in commands]
        self.step = 0
        self.returncode: Optional[int] = None
        self.failed_command: Optional[List[str]] = None
        self.output: Deque[str] = collections.deque(maxlen=400)
        self._new: "collections.deque[str]" = collections.deque()
        self._process: Optional[subprocess.Popen] = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def finished(self) -> bool:
        return self.returncode is not None

    @property
    def fraction(self) -> float:
        """Commands done so far over all (pip gives no overall progress of its own)."""
        return (self.step if not self.finished else len(self.commands)) / len(self.commands)

    def lines(self) -> List[str]:
        """Output lines that arrived since the last call."""
        found = []
        while self._new:
            found.append(self._new.popleft())
        return found

    def cancel(self) -> None:
        self._cancelled = True
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        self._thread.join(timeout)
        return self.returncode

    def _say(self, line: str) -> None:
        self.output.append(line)
        self._new.append(line)

    def _run(self) -> None:
        for self.step, command in enumerate(self.commands):
            if self._cancelled:
                self.returncode = -1
                return
            self._say("$ " + " ".join(command))
            try:
                self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                                 errors="replace", **hidden_console())
            except OSError as error:
                self._say(f"could not start: {error}")
                self.failed_command, self.returncode = command, 127
                return
            for line in self._process.stdout:
                self._say(line.rstrip())
            code = self._process.wait()
            if self._cancelled:  # terminated on request: not a failure of the command
                self.returncode = -1
                return
            if code != 0:
                self.failed_command, self.returncode = command, code
                return
        self.returncode = -1 if self._cancelled else 0
