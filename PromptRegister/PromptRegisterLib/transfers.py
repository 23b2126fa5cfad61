"""A remote worker's files, moved from the panel's timer: the volumes before a registration, its results after.

A worker started by a command (SSH) cannot read this machine's files, so they travel through the protocol in
chunks (promptregister.worker.transfer_jobs). Moving them inside one GUI slot froze Slicer for as long as the
network took; here each timer tick moves the files a few chunks further, within a small time budget, so the panel
shows progress and Cancel works.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

from promptregister.worker.transfer_jobs import DownloadJob, TransferJob, UploadJob

SENDING = "sending"
"""The running id while the volumes travel to the worker, before the worker has a request of its own."""

TICK_BUDGET_SECONDS = 0.05
"""How long one tick may spend on transfers (Slicer repaints between ticks)."""


class Transfers:
    """Several files one way (all the volumes of one request, or all the files of one result)."""

    def __init__(self, kind: str, jobs: Dict[str, TransferJob], stage: str):
        self.kind = kind
        self.jobs = jobs
        self.stage = stage
        self.cancelled = False
        self.request: Dict[str, Any] = {}
        self.result: Dict[str, Any] = {}

    @classmethod
    def uploads(cls, client, files: Dict[str, Path], request: Dict[str, Any]) -> "Transfers":
        """The request's files (field -> local path) to the worker; the request is sent with their paths there."""
        transfers = cls("upload", {field: UploadJob(client, path) for field, path in files.items()},
                        "sending the volumes to the worker")
        transfers.request = dict(request)
        return transfers

    @classmethod
    def downloads(cls, client, result: Dict[str, Any], folder: Path) -> "Transfers":
        """A result event's files (name -> the worker's path) into `folder`."""
        jobs = {name: DownloadJob(client, path, Path(folder) / Path(path).name)
                for name, path in result["files"].items()}
        transfers = cls("download", jobs, "bringing the results back")
        transfers.result = dict(result)
        return transfers

    @property
    def fraction(self) -> float:
        return sum(job.fraction for job in self.jobs.values()) / max(len(self.jobs), 1)

    def step(self, budget_seconds: Optional[float] = None) -> bool:
        """Move the files on for at most about `budget_seconds` (TICK_BUDGET_SECONDS); True when all are across."""
        deadline = time.monotonic() + (TICK_BUDGET_SECONDS if budget_seconds is None else budget_seconds)
        for job in self.jobs.values():
            while not job.done:
                job.step()
                if time.monotonic() > deadline:
                    return False
                if job.request_id is not None:
                    time.sleep(0.001)  # the answer is on its way; the pipe readers take the GIL meanwhile
        return True

    def cancel(self) -> None:
        self.cancelled = True
        for job in self.jobs.values():
            job.cancel()

    def request_with_paths(self) -> Dict[str, Any]:
        return {**self.request, **{field: job.remote_path for field, job in self.jobs.items()}}

    def result_with_local_files(self) -> Dict[str, Any]:
        """The result event, its files now local ("local": True says so to finish())."""
        return {**self.result, "files": {name: str(job.local_path) for name, job in self.jobs.items()},
                "local": True}
