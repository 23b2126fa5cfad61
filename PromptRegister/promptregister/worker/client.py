"""Starting the worker and talking to it: used by the Slicer Logic and the tests.

The worker runs with any Python that has the engine installed (default: this
interpreter, i.e. Slicer's own); a second Python with CUDA works the same way.
Events are read on a background thread into per-request queues, so a caller
can wait for one request's result while another's progress arrives.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional

STDERR_LINES_KEPT = 40


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


class WorkerClient:
    """A running worker process.

    Arguments:
        python: the interpreter to run it with (default: sys.executable).
        env: extra environment variables for the worker.
    """

    def __init__(self, python: Optional[str] = None, env: Optional[Dict[str, str]] = None):
        self.python = python or sys.executable
        self.extra_env = dict(env or {})
        self.process: Optional[subprocess.Popen] = None
        self.stderr_lines: Deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        self._queues: Dict[Optional[str], "queue.Queue[dict]"] = collections.defaultdict(queue.Queue)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- process ---------------------------------------------------------------------------------
    def start(self) -> Dict[str, Any]:
        """Start the worker and return its hello (protocol and engine versions, private folder)."""
        from ..runtime import tcmalloc_library

        environment = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        # the worker imports this same engine, wherever it lives (inside Slicer: the module's folder, which is on
        # Slicer's sys.path but not on PYTHONPATH)
        engine_root = str(Path(__file__).resolve().parents[2])
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [engine_root, environment.get("PYTHONPATH")]))
        library = tcmalloc_library() if environment.get("PROMPTREGISTER_TCMALLOC", "1") != "0" else None
        if library and library not in environment.get("LD_PRELOAD", ""):
            environment["LD_PRELOAD"] = ":".join(filter(None, [library, environment.get("LD_PRELOAD")]))
        self.stderr_lines.clear()
        self._queues.clear()
        self.process = subprocess.Popen(
            [self.python, "-m", "promptregister.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", env=environment, bufsize=1)
        threading.Thread(target=self._read_events, args=(self.process,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.process,), daemon=True).start()
        self.hello = self.call("hello", timeout=120)
        return self.hello

    def restart(self) -> Dict[str, Any]:
        self.close(timeout=5)
        return self.start()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self, timeout: float = 30) -> None:
        """Ask the worker to shut down (it removes its private folder); kill it if it does not."""
        if self.process is None:
            return
        if self.alive:
            try:
                self.call("shutdown", timeout=timeout)
            except WorkerError:
                pass
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> "WorkerClient":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- messages ----------------------------------------------------------------------------------
    def send(self, kind: str, **fields: Any) -> str:
        """Send a request; returns its id."""
        request_id = str(next(self._ids))
        self.send_raw(json.dumps({"id": request_id, "type": kind, **fields}))
        return request_id

    def send_raw(self, line: str) -> None:
        """Send one line as it is (tests use this for malformed input)."""
        if not self.alive:
            raise self._died()
        with self._lock:
            try:
                self.process.stdin.write(line + "\n")
                self.process.stdin.flush()
            except (BrokenPipeError, OSError):
                raise self._died() from None

    def events(self, request_id: Optional[str], timeout: Optional[float] = None) -> Iterator[dict]:
        """Events answering one request, ending with (and including) its result or error."""
        events = self._queues[request_id]
        while True:
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                if not self.alive and events.empty():
                    raise self._died() from None
                if timeout is not None:
                    timeout -= 0.2
                    if timeout <= 0:
                        raise TimeoutError(f"no answer to request {request_id}") from None
                continue
            yield event
            if event.get("type") in ("result", "error"):
                return

    def poll(self, request_id: Optional[str]) -> List[dict]:
        """The events that arrived for a request, without waiting (for a GUI timer); WorkerDied if the worker
        ended and nothing is left to read."""
        events = self._queues[request_id]
        found = []
        while True:
            try:
                found.append(events.get_nowait())
            except queue.Empty:
                break
        if not found and not self.alive:
            raise self._died()
        return found

    def wait(self, request_id: Optional[str], on_progress: Optional[Callable[[str, float], None]] = None,
             on_log: Optional[Callable[[str], None]] = None, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The request's result; WorkerError for an error event, WorkerDied if the worker ends."""
        for event in self.events(request_id, timeout):
            kind = event.get("type")
            if kind == "progress" and on_progress is not None:
                on_progress(event.get("stage", ""), float(event.get("fraction", 0.0)))
            elif kind == "log" and on_log is not None:
                on_log(event.get("message", ""))
            elif kind == "error":
                raise WorkerError(event.get("code", "internal"), event.get("message", ""))
            elif kind == "result":
                return {k: v for k, v in event.items() if k not in ("id", "type")}
        raise WorkerError("internal", "the event stream ended without a result")

    def call(self, kind: str, on_progress: Optional[Callable[[str, float], None]] = None,
             timeout: Optional[float] = None, **fields: Any) -> Dict[str, Any]:
        return self.wait(self.send(kind, **fields), on_progress=on_progress, timeout=timeout)

    def cancel(self, request_id: str) -> bool:
        return bool(self.call("cancel", target=request_id, timeout=30).get("cancelled"))

    # -- reading threads -------------------------------------------------------------------------------
    def _read_events(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                self.stderr_lines.append(f"(unparsable event) {line.rstrip()}")
                continue
            self._queues[event.get("id")].put(event)

    def _read_stderr(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self.stderr_lines.append(line.rstrip())

    def _died(self) -> WorkerDied:
        code = self.process.poll() if self.process is not None else None
        return WorkerDied(code, list(self.stderr_lines))
