"""The worker process: reads requests from stdin, writes events to stdout.

Short requests (hello, load, cancel, shutdown, upload, download) are answered on the reading
thread. Interactive ones (protocol 2: open, prompt, fit, ...) run in order on their own thread
(interactive.py). Long ones (embed, register) run one at a time on a background thread,
so a "cancel" can arrive while they work: it sets a flag that the next
progress callback turns into `Cancelled`, which unwinds the engine before it
writes anything (outputs are written all or nothing, last). The protocol owns
stdout: anything else the engine prints goes to stderr.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Dict, Optional, TextIO

from .. import __version__
from .batch_request import run_batch_request
from .interactive import InteractiveRequests
from .protocol import (INTERACTIVE_REQUESTS, LONG_REQUESTS, PROTOCOL_VERSION, REQUEST_TYPES, Cancelled,
                       ProtocolError, encode_event, error_fields, parse_request)
from .session import Session
from .transfer import Transfers


MAX_REQUEST_CHARS = 1 << 20
"""The longest request line read (1 Mi characters); longer ones are refused without being held in memory."""

SHUTDOWN_GRACE_S = 10.0
"""How long a shutdown (or the end of stdin) waits for the running request to unwind."""


class Server:
    def __init__(self, stdin: TextIO, stdout: TextIO):
        self.stdin = stdin
        self.stdout = stdout
        self.session = Session()
        self.write_lock = threading.Lock()
        self.running: Optional[threading.Thread] = None
        self.running_id: Optional[str] = None
        self.cancel_flag = threading.Event()  # the running request's; each long request has its own
        self.answered = threading.Event()  # set just before the running request's last event is written
        self.interactive = InteractiveRequests(self)  # protocol 2's sessions, on their own thread
        self.transfers = Transfers(self.session.folder)

    def send(self, request_id: Optional[str], kind: str, **fields: Any) -> None:
        line = encode_event(request_id, kind, **fields)
        with self.write_lock:
            self.stdout.write(line + "\n")
            self.stdout.flush()

    def serve(self) -> int:
        try:
            while True:
                line = self.stdin.readline(MAX_REQUEST_CHARS + 1)
                if not line:
                    break  # end of input
                if len(line) > MAX_REQUEST_CHARS:
                    self.skip_rest_of_line(line)
                    self.send(None, "error", code="bad_request",
                              message=f"a request line is longer than {MAX_REQUEST_CHARS:,} characters; it was "
                                      "ignored (requests name files by path, they do not carry image data)")
                    continue
                if not line.strip():
                    continue
                if not self.handle(line):
                    break
        finally:
            self.interactive.stop()
            self.stop_running()
            self.session.close()
        return 0

    def skip_rest_of_line(self, start: str) -> None:
        """Read and drop the rest of an over-long line, a bounded piece at a time."""
        piece = start
        while piece and not piece.endswith("\n"):
            piece = self.stdin.readline(MAX_REQUEST_CHARS)

    def handle(self, line: str) -> bool:
        """Answer one request line; False after shutdown. Whatever goes wrong is answered as an error event (code
        "internal" for an unexpected exception, printed to stderr): the reading thread must never end on a
        request, or the worker would stop answering every later one."""
        try:
            request = parse_request(line)
        except Exception as error:
            self.send(getattr(error, "request_id", None), "error", **error_fields(error, "cancelled"))
            return True
        request_id, kind = request["id"], request["type"]
        try:
            if kind == "hello":
                self.send(request_id, "result", protocol=PROTOCOL_VERSION, engine=__version__,
                          folder=str(self.session.folder), requests=list(REQUEST_TYPES))
            elif kind == "load":
                volume_id, volume = self.session.load(request["path"])  # a path: parse_request checked it
                self.send(request_id, "result", volume=volume_id, shape=list(volume.geometry.size),
                          spacing=list(volume.geometry.spacing))
            elif kind == "cancel":
                target = request.get("target")
                stopping = self.working() and target in (None, self.running_id)
                stopped = self.running_id if stopping else target
                if stopping:
                    self.cancel_flag.set()
                elif self.interactive.cancel(target):  # an interactive request (a fit) at work
                    stopping, stopped = True, self.interactive.current_id
                self.send(request_id, "result", cancelled=bool(stopping), target=stopped)
            elif kind == "shutdown":  # answered at once; the running request is stopped after the answer
                self.cancel_flag.set()
                self.interactive.stop()
                self.send(request_id, "result", shutdown=True)
                return False
            elif kind in LONG_REQUESTS:
                self.start_long(request)
            elif kind in INTERACTIVE_REQUESTS:
                self.interactive.submit(request)
            elif kind == "upload":
                self.send(request_id, "result", **self.transfers.upload(request))
            elif kind == "download":
                self.send(request_id, "result", **self.transfers.download(request))
        except Exception as error:  # ProtocolError, PromptRegisterError ("engine"), or a bug ("internal")
            self.send(request_id, "error", **error_fields(error, "cancelled"))
        return True

    # -- long requests --------------------------------------------------------------------------
    def working(self) -> bool:
        """Whether a long request is still at work. One whose last event was written is not, even while its
        thread is still returning: a client that has read that event may send the next request at once."""
        return self.running is not None and self.running.is_alive() and not self.answered.is_set()

    def start_long(self, request: Dict[str, Any]) -> None:
        """Run a long request on its own thread. One runs at a time: while one works, another is refused as busy,
        unless the running one was cancelled and is only unwinding; then the new one starts as soon as it ends
        (a user who closes a scene and registers again must not be told "busy")."""
        if self.working() and not self.cancel_flag.is_set():
            raise ProtocolError("busy", f"request {self.running_id} is still running; cancel it or wait")
        previous = self.running if self.running is not None and self.running.is_alive() else None
        self.cancel_flag, self.answered = threading.Event(), threading.Event()
        self.running_id = request["id"]
        self.running = threading.Thread(target=self.run_long, args=(request, self.cancel_flag, self.answered, previous),
                                        daemon=True)
        self.running.start()

    def run_long(self, request: Dict[str, Any], cancelled: threading.Event, answered: threading.Event,
                 previous: Optional[threading.Thread] = None) -> None:
        request_id = request["id"]

        def finish(kind: str, **fields: Any) -> None:
            answered.set()
            self.send(request_id, kind, **fields)

        last = {"stage": None, "percent": -1}
        if previous is not None:
            previous.join()  # a cancelled request still unwinding

        def progress(stage: str, fraction: float) -> None:
            if cancelled.is_set():
                raise Cancelled()
            percent = int(100 * min(max(float(fraction), 0.0), 1.0))
            if (stage, percent) != (last["stage"], last["percent"]):  # at most one event per stage and percent
                last["stage"], last["percent"] = stage, percent
                self.send(request_id, "progress", stage=stage, fraction=percent / 100.0)

        try:
            handler = {"embed": self.session.embed, "register": self.session.register,
                       "batch": run_batch_request}[request["type"]]
            result = handler(request, progress)
            finish("result", **result)
        except Exception as error:  # never let the worker die on one request
            finish("error", **error_fields(error, "cancelled; nothing was written"))

    def stop_running(self, timeout: float = SHUTDOWN_GRACE_S) -> None:
        """Cancel the running request and give it `timeout` seconds to unwind (it stops at its next progress
        report); a request that does not stop in time dies with the process (it writes nothing but through
        atomic renames, so nothing half-written is left)."""
        if self.running is not None and self.running.is_alive():
            self.cancel_flag.set()
            self.running.join(timeout)


def main() -> int:
    # Stray output must not corrupt the protocol stream: Python's prints, C libraries writing to file descriptor 1,
    # and child processes (a batch request's Dask workers) all go to stderr; the protocol keeps a private copy.
    sys.stdout.flush()
    if hasattr(sys.stdin, "reconfigure"):  # UTF-8 whatever the locale; bytes that are not UTF-8 reach parse_request
        sys.stdin.reconfigure(encoding="utf-8", errors="surrogateescape")  # as surrogates, refused as "bad_json"
    protocol_out = open(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    server = Server(sys.stdin, protocol_out)
    print(f"promptregister worker {__version__} ready (protocol {PROTOCOL_VERSION}, folder {server.session.folder})",
          file=sys.stderr, flush=True)
    return server.serve()
