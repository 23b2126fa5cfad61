"""Layer 2: the background worker (a JSON-lines process on stdin/stdout, no
network port) and the client that starts and talks to it. See protocol.py."""

from .client import WorkerClient, WorkerDied, WorkerError  # noqa: F401
from .protocol import PROTOCOL_VERSION  # noqa: F401

__all__ = ["PROTOCOL_VERSION", "WorkerClient", "WorkerDied", "WorkerError"]
