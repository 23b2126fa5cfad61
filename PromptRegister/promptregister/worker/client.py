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
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence

from .worker_errors import WorkerDied, WorkerError  # noqa: F401  (re-exported: callers import them from here)

STDERR_LINES_KEPT = 40


def hidden_console() -> Dict[str, Any]:
    """Popen arguments that keep Windows from opening a console window for the worker (as Slicer's
    launchConsoleProcess and SlicerElastix do); nothing elsewhere."""
    if os.name != "nt":
        return {}
    info = subprocess.STARTUPINFO()
    info.dwFlags |= subprocess.STARTF_USESHOWWINDOW
    info.wShowWindow = 0  # SW_HIDE
    return {"startupinfo": info, "creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)}


def _reap(process: subprocess.Popen, timeout: float) -> None:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()




class WorkerClient:
    """A running worker process.

    Arguments:
        python: the interpreter to run it with (default: sys.executable).
        env: extra environment variables for the worker.
        command: the whole command line that starts a worker elsewhere instead, e.g.
            ["ssh", "gpu-box", "/opt/venv/bin/python", "-m", "promptregister.worker"]: the JSON lines travel over
            its stdin and stdout, so no port is opened. Such a worker is `remote`: it cannot read the client's
            files nor the client its, so volumes go up and results come down through the protocol (`upload`,
            `download`).
    """

    def __init__(self, python: Optional[str] = None, env: Optional[Dict[str, str]] = None,
                 command: Optional[Sequence[str]] = None):
        self.python = python or sys.executable
        self.command = list(command) if command else None
        self.extra_env = dict(env or {})
        self.process: Optional[subprocess.Popen] = None
        self.stderr_lines: Deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        self._queues: Dict[Any, "queue.Queue[dict]"] = {}
        self._queues_lock = threading.Lock()  # the reading thread and the caller both create queues
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._hello: Optional[Dict[str, Any]] = None
        self._hello_id: Optional[str] = None
        self._uploaded: Dict[tuple, str] = {}  # (local path, mtime, size, name) -> the path on the worker

    # -- process ---------------------------------------------------------------------------------
    def start(self, wait: bool = True, timeout: float = 120) -> Optional[Dict[str, Any]]:
        """Start the worker. With wait (batch use, tests) return its hello (protocol and engine versions,
        private folder); without (a GUI) return None at once: requests sent meanwhile wait in the worker's input,
        and `hello` waits for the answer when it is read."""
        from ..runtime import tcmalloc_library

        environment = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        # the worker imports this same engine, wherever it lives (inside Slicer: the module's folder, which is on
        # Slicer's sys.path but not on PYTHONPATH)
        engine_root = str(Path(__file__).resolve().parents[2])
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [engine_root, environment.get("PYTHONPATH")]))
        # tcmalloc for our own Python only: a whole command line (ssh ...) starts a program that is not ours, and
        # the remote side chooses its own allocator
        wanted = environment.get("PROMPTREGISTER_TCMALLOC", "1") != "0" and self.command is None
        library = tcmalloc_library() if wanted else None
        if library and library not in environment.get("LD_PRELOAD", ""):
            environment["LD_PRELOAD"] = ":".join(filter(None, [library, environment.get("LD_PRELOAD")]))
        self.stderr_lines.clear()
        self._uploaded.clear()  # a new worker has a new folder
        with self._queues_lock:
            self._queues.clear()
        self._hello = None
        self.process = subprocess.Popen(
            self.command or [self.python, "-m", "promptregister.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", env=environment, bufsize=1,
            **hidden_console())
        threading.Thread(target=self._read_events, args=(self.process,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.process,), daemon=True).start()
        self._hello_id = self.send("hello")
        if wait:
            self._hello = self.wait(self._hello_id, timeout=timeout)
        return self._hello

    @property
    def hello(self) -> Dict[str, Any]:
        """The worker's hello; waits for it when it has not arrived yet."""
        if self._hello is None:
            if self._hello_id is None:
                raise WorkerError("internal", "the worker was not started")
            self._hello = self.wait(self._hello_id, timeout=120)
        return self._hello

    def restart(self) -> Optional[Dict[str, Any]]:
        self.close(wait=True, timeout=5)
        return self.start()

    @property
    def remote(self) -> bool:
        """Whether the worker was started by a whole command line (it may run elsewhere: files travel through
        the protocol)."""
        return self.command is not None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self, wait: bool = True, timeout: float = 30) -> None:
        """Ask the worker to shut down (it removes its private folder) and close its stdin; kill it if it has not
        ended after `timeout` s. Without wait (a GUI, at exit) return at once and let a thread do the waiting."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                with self._lock:
                    process.stdin.write(json.dumps({"id": "shutdown", "type": "shutdown"}) + "\n")
                    process.stdin.flush()
                    process.stdin.close()  # end of input: the worker stops even if it missed the request
            except (BrokenPipeError, OSError, ValueError):
                pass
        if wait:
            _reap(process, timeout)
        else:
            threading.Thread(target=_reap, args=(process, timeout), daemon=True).start()

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
        events = self._queue(request_id)
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
        events = self._queue(request_id)
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

    def cancel(self, request_id: str, wait: bool = True) -> bool:
        """Ask the worker to stop a running request. With wait, True when it was running and is stopping; without
        (a GUI), True once the request is sent: the stopped request then answers with a "cancelled" error."""
        if not wait:
            if not self.alive:
                return False
            self.send("cancel", target=request_id)
            return True
        return bool(self.call("cancel", target=request_id, timeout=30).get("cancelled"))

    # -- files through the protocol (remote workers) -------------------------------------------------------------
    def upload(self, path: os.PathLike, name: Optional[str] = None, timeout: float = 120) -> str:
        """Send a local file to the worker in checksummed, compressed chunks and wait; returns its path there.
        (A GUI steps an UploadJob from its timer instead.)"""
        from .transfer_jobs import UploadJob

        job = UploadJob(self, path, name)
        job.run(timeout)
        return job.remote_path

    def download(self, remote_path: str, local_path: os.PathLike, timeout: float = 120) -> Path:
        """Fetch one of the worker's result files and wait; the whole file's SHA-256 is checked before it takes
        its name (written to a temporary file and renamed, so a failed transfer leaves nothing)."""
        from .transfer_jobs import DownloadJob

        job = DownloadJob(self, remote_path, local_path)
        try:
            job.run(timeout)
        finally:
            if not job.done:
                job.partial.unlink(missing_ok=True)
        return job.local_path

    def uploaded(self, key: tuple) -> Optional[str]:
        """Where this worker keeps a file it has already received (None: not sent yet)."""
        return self._uploaded.get(key)

    def remember_upload(self, key: tuple, remote_path: str) -> None:
        self._uploaded[key] = remote_path

    # -- reading threads -------------------------------------------------------------------------------
    def _read_events(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                self.stderr_lines.append(f"(unparsable event) {line.rstrip()}")
                continue
            self._queue(event.get("id")).put(event)

    def _read_stderr(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self.stderr_lines.append(line.rstrip())

    def _queue(self, request_id: Any) -> "queue.Queue[dict]":
        with self._queues_lock:
            if request_id not in self._queues:
                self._queues[request_id] = queue.Queue()
            return self._queues[request_id]

    def forget(self, request_id: Any) -> None:
        """Drop a request's queue and whatever still arrives for it (an abandoned run)."""
        with self._queues_lock:
            self._queues.pop(request_id, None)

    def _died(self) -> WorkerDied:
        code = self.process.poll() if self.process is not None else None
        return WorkerDied(code, list(self.stderr_lines))
