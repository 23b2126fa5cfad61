"""Files to and from a remote worker one chunk at a time, never waiting: for a GUI timer.

A transfer is a series of round trips (transfer.py: each chunk is a request and its answer). `step()` does at
most one thing: send the next chunk, or take the answer to the one in flight if it has arrived. A GUI calls it
from its timer and stays responsive, can show `fraction` and can `cancel()`; WorkerClient.upload/download run
the same jobs to the end, waiting for each answer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional

from ..checksums import sha256_of
from .transfer import CHUNK_BYTES, pack, unpack
from .worker_errors import WorkerError


class TransferJob:
    """What uploads and downloads share: the chunk in flight, its answer, the end. `client` is a WorkerClient
    (send, poll, wait, forget)."""

    def __init__(self, client: Any):
        self.client = client
        self.request_id: Optional[str] = None  # the chunk in flight
        self.cancelled = False

    @property
    def done(self) -> bool:
        raise NotImplementedError

    @property
    def fraction(self) -> float:
        raise NotImplementedError

    def step(self) -> bool:
        """Send the next chunk or take the answer to the last; True once the file is across."""
        if self.done or self.cancelled:
            return self.done
        if self.request_id is None:
            self.request_id = self.send_next()
            return False
        for event in self.client.poll(self.request_id):
            if event.get("type") == "error":
                self.request_id = None
                raise WorkerError(event.get("code", "transfer"), event.get("message", ""))
            if event.get("type") == "result":
                self.request_id = None
                self.take({k: v for k, v in event.items() if k not in ("id", "type")})
        return self.done

    def run(self, timeout: Optional[float] = None) -> None:
        """To the end, waiting for each answer (console, command line)."""
        while not self.done:
            self.request_id = self.send_next()
            answer = self.client.wait(self.request_id, timeout=timeout)
            self.request_id = None
            self.take(answer)

    def cancel(self) -> None:
        """Stop; an answer still in flight is dropped."""
        self.cancelled = True
        if self.request_id is not None:
            self.client.forget(self.request_id)
            self.request_id = None

    def send_next(self) -> str:
        raise NotImplementedError

    def take(self, answer: Dict[str, Any]) -> None:
        raise NotImplementedError


class UploadJob(TransferJob):
    """One local file into the worker's folder; `remote_path` once it is there (at once when this worker
    already has it)."""

    def __init__(self, client: Any, path: os.PathLike, name: Optional[str] = None):
        super().__init__(client)
        self.path = Path(path)
        stat = self.path.stat()
        self.size = stat.st_size
        self.key = (str(self.path.resolve()), stat.st_mtime_ns, stat.st_size, name)
        self.name = name or self.path.name
        self.remote_path: Optional[str] = client.uploaded(self.key)
        self.offset = 0
        self._whole: Optional[str] = None
        self._sending = 0

    @property
    def done(self) -> bool:
        return self.remote_path is not None

    @property
    def fraction(self) -> float:
        return 1.0 if self.done else self.offset / max(self.size, 1)

    def send_next(self) -> str:
        if self._whole is None:
            self._whole = sha256_of(self.path)
        with open(self.path, "rb") as stream:
            stream.seek(self.offset)
            raw = stream.read(CHUNK_BYTES)
        self._sending = len(raw)
        last = self.offset + len(raw) >= self.size
        return self.client.send("upload", name=self.name, offset=self.offset, last=last,
                                **({"sha256": self._whole} if last else {}), **pack(raw))

    def take(self, answer: Dict[str, Any]) -> None:
        self.offset += self._sending
        if "path" in answer:
            self.remote_path = answer["path"]
            self.client.remember_upload(self.key, self.remote_path)


class DownloadJob(TransferJob):
    """One of the worker's result files to `local_path`: written to a ".part" file whose whole SHA-256 is
    checked before it takes its name, so a failed or cancelled transfer leaves nothing."""

    def __init__(self, client: Any, remote_path: str, local_path: os.PathLike):
        super().__init__(client)
        self.remote_path = remote_path
        self.local_path = Path(local_path)
        self.partial = self.local_path.with_name(self.local_path.name + ".part")
        self.partial.unlink(missing_ok=True)
        self.offset = 0
        self.size: Optional[int] = None
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    @property
    def fraction(self) -> float:
        return 1.0 if self._done else self.offset / self.size if self.size else 0.0

    def send_next(self) -> str:
        return self.client.send("download", path=self.remote_path, offset=self.offset)

    def take(self, answer: Dict[str, Any]) -> None:
        from .protocol import ProtocolError

        try:
            raw = unpack(answer)
        except ProtocolError as error:
            self.partial.unlink(missing_ok=True)
            raise WorkerError("transfer", error.message) from None
        with open(self.partial, "ab") as stream:
            stream.write(raw)
        self.offset += len(raw)
        if isinstance(answer.get("size"), int):
            self.size = answer["size"]
        if answer.get("last") or not raw:
            if sha256_of(self.partial) != answer.get("sha256"):
                self.partial.unlink(missing_ok=True)
                raise WorkerError("transfer", f"{self.remote_path} arrived damaged (SHA-256 differs); try again")
            self.partial.replace(self.local_path)
            self._done = True

    def cancel(self) -> None:
        super().cancel()
        self.partial.unlink(missing_ok=True)
