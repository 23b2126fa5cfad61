"""The errors a worker client raises: an error event from the worker, or the worker's death."""

from __future__ import annotations

from typing import List, Optional


class WorkerError(Exception):
    """An error event: `code` (see protocol.ERROR_CODES) and the worker's message."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message


class WorkerDied(WorkerError):
    """The worker process ended; `stderr` holds its last lines."""

    def __init__(self, returncode: Optional[int], stderr: List[str]):
        tail = "\n".join(stderr[-10:]) or "(no output on stderr)"
        super().__init__("died", f"the worker stopped (exit code {returncode}); its last messages:\n{tail}")
        self.returncode = returncode
        self.stderr = stderr
