"""One registration through the worker, without Qt: MRML volumes -> files -> worker -> results -> MRML.

The module's Logic (module_logic.ModuleLogic) holds one of these; it owns the worker. Usable on its own from
Slicer's Python console and in tests (slicer-core wheel):

    run = RegistrationRun()
    nodes = run.register(scene, fixed_node, moving_node, markups_node=points, model="classical")
    nodes["transform"], nodes["fixed_segmentation"], nodes["moving_segmentation"], nodes["summary"]

Nothing here blocks a GUI for long: the worker starts in the background (its
answers queue up until it is ready), volumes are written uncompressed, cancel
and close return at once, and a worker that dies becomes an error event.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from promptregister.io import write_volume
from promptregister.progress import StageProgress
from promptregister.worker import WorkerClient, WorkerDied, WorkerError

from .mrml import point_prompts, results_to_scene, volume_from_node
from .transfers import SENDING, Transfers
from .transforms import check_registration_inputs, placement_matrix



class RegistrationRun:
    """Owns the worker; turns a request on MRML nodes into a registration and its result nodes.

    Arguments:
        python: interpreter for the worker (default: the current one, i.e. Slicer's Python).
        command: a whole command line that starts the worker instead (for example over SSH on a GPU machine:
            ["ssh", "gpu-box", "/opt/venv/bin/python", "-m", "promptregister.worker"]); volumes and results then
            travel through the protocol (WorkerClient.remote).
    """

    def __init__(self, python: Optional[str] = None, command: Optional[List[str]] = None):
        self.python = python
        self.command = list(command) if command else None
        self.client: Optional[WorkerClient] = None
        self.running_id: Optional[str] = None
        self._written: Dict[str, Path] = {}
        self._folder: Optional[Path] = None
        self._transfer: Optional[Transfers] = None  # a remote worker's volumes or results on their way

    @property
    def folder(self) -> Path:
        """A private folder (0700) for the volumes sent to the worker and its results; removed by close()."""
        if self._folder is None or not self._folder.is_dir():
            self._folder = Path(tempfile.mkdtemp(prefix="promptregister-slicer-"))
            self._written.clear()
        return self._folder

    def worker(self, wait: bool = False) -> WorkerClient:
        """The worker, started (or restarted after it died) as needed. Without wait this returns at once: requests
        sent before the worker is ready wait in its input."""
        if (self.client is None or self.client.python != (self.python or self.client.python)
                or self.client.command != self.command):
            if self.client is not None:
                self.client.close(wait=False)
            self.client = WorkerClient(python=self.python, command=self.command)
            self.client.start(wait=wait)
        elif not self.client.alive:
            self.client.close(wait=False)
            self.client.start(wait=wait)
        return self.client

    def warm_up(self) -> None:
        """Start the worker now (when the module is entered) so the first Register does not wait for it."""
        self.worker(wait=False)

    def close(self, wait: bool = True) -> None:
        """Stop the worker (without wait: at once, a thread reaps it) and remove the private folder."""
        if self.client is not None:
            self.client.close(wait=wait)
            self.client = None
        self.running_id = None
        self._written.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def volume_file(self, node, parent_matrix=None) -> Path:
        """The node's voxels as an uncompressed file in the private folder (fast to write: no gzip on the GUI
        thread); rewritten only when the data or its placement changed."""
        import hashlib

        import vtk

        image = node.GetImageData()
        matrix = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        placement = [matrix.GetElement(r, c) for r in range(4) for c in range(4)]
        if parent_matrix is not None:
            placement += [float(v) for v in parent_matrix.ravel()]
        geometry = hashlib.sha1(repr(placement).encode())
        # voxels (image modification time) and grid (IJK -> RAS, and the pre-alignment); not the node's own time,
        # which changes when it merely observes the result transform
        stamp = f"{node.GetID()}-{image.GetMTime() if image is not None else 0}-{geometry.hexdigest()[:10]}"
        folder = self.folder
        if stamp not in self._written:
            path = folder / f"{stamp}.nii"
            write_volume(volume_from_node(node, parent_matrix), path, compress=False)
            self._written[stamp] = path
        return self._written[stamp]

    def start(self, fixed_node, moving_node, *, markups_node=None, fixed_markups_node=None,
              text: Optional[str] = None,
              auto: bool = False, sample_points: int = 0, model: str = "auto", device: str = "auto",
              checkpoint: Optional[str] = None, options: Optional[dict] = None,
              out_dir: Optional[str] = None) -> str:
        """Send a registration request and return at once (the GUI polls it); returns the request id.

        A linear transform the user put the moving volume under is kept as its pre-alignment: the worker gets
        the moving voxels where that transform places them (see transforms.py). With no markups, text or auto the
        images are registered alone. `fixed_markups_node`: counterparts of the first moving points on the fixed
        volume, in order; each such couple is a point pair (the user's own correspondence)."""
        if self.running_id is not None:
            raise RuntimeError("a registration is already running; cancel it first")
        check_registration_inputs(fixed_node, moving_node)
        points = point_prompts(markups_node) if markups_node is not None else []
        point_pairs = []
        if fixed_markups_node is not None and fixed_markups_node.GetNumberOfControlPoints():
            counterparts = point_prompts(fixed_markups_node)
            point_pairs = [{"moving": moving["lps"], "fixed": fixed["lps"]}
                           for moving, fixed in zip(points, counterparts)]
            points = points[len(point_pairs):]
        client = self.worker()
        fixed_file = self.volume_file(fixed_node)
        moving_file = self.volume_file(moving_node, placement_matrix(moving_node))
        if client.remote:  # the worker cannot read this machine's files: they travel through the protocol
            out_dir = out_dir or f"result-{Path(tempfile.mkdtemp(prefix='result-', dir=self.folder)).name}"
        request = dict(fixed=str(fixed_file), moving=str(moving_file),
                       points=points, point_pairs=point_pairs, auto=auto, sample_points=sample_points,
                       model=model, device=device,
                       options=options or {}, overwrite=True,
                       out_dir=out_dir or tempfile.mkdtemp(prefix="result-", dir=self.folder))
        if text:
            request["text"] = text
        if checkpoint:
            request["checkpoint"] = checkpoint
        if client.remote:  # sent chunk by chunk from poll(), so that no GUI slot waits for the network
            self._transfer = Transfers.uploads(client, {"fixed": fixed_file, "moving": moving_file}, request)
            self.running_id = SENDING
        else:
            self.running_id = client.send("register", **request)
        return self.running_id

    def poll(self) -> List[Dict[str, Any]]:
        """Events of the running registration so far (progress, log, and at the end result or error). A worker
        that died becomes an error event (code "died") carrying its last stderr lines, and ends the run. For a
        remote worker each call also moves the volumes, then the results, a few chunks further (a progress
        event says how far); the result event comes once its files are here."""
        if self.running_id is None or self.client is None:
            return []
        try:
            if self._transfer is not None:
                return self._step_transfer()
            events = self.client.poll(self.running_id)
        except WorkerDied as error:
            self.running_id, self._transfer = None, None
            return [{"type": "error", "code": "died", "message": str(error), "stderr": error.stderr}]
        except WorkerError as error:
            self.running_id, self._transfer = None, None
            return [{"type": "error", "code": error.code, "message": error.message}]
        results = [event for event in events if event.get("type") == "result"]
        if results and self.client.remote:  # the files are the worker's: bring them here before reporting
            local = Path(tempfile.mkdtemp(prefix="result-", dir=self.folder))
            self._transfer = Transfers.downloads(self.client, results[0], local)
            return [event for event in events if event.get("type") != "result"] + self._step_transfer()
        if any(event.get("type") in ("result", "error") for event in events):
            self.running_id = None
        return events

    def _step_transfer(self) -> List[Dict[str, Any]]:
        transfer = self._transfer
        if transfer.cancelled:
            self.running_id, self._transfer = None, None
            return [{"type": "error", "code": "cancelled", "message": "cancelled"}]
        if not transfer.step():
            return [{"type": "progress", "stage": transfer.stage, "fraction": transfer.fraction}]
        self._transfer = None
        if transfer.kind == "upload":  # the volumes are there: the registration itself starts
            self.running_id = self.client.send("register", **transfer.request_with_paths())
            return [{"type": "progress", "stage": "sent; registering", "fraction": 0.0}]
        self.running_id = None
        return [transfer.result_with_local_files()]

    def abandon(self) -> None:
        """Forget the running registration (the scene it was for is closing): cancel it, and never report it."""
        if self.running_id is None:
            return
        if self._transfer is not None:
            self._transfer.cancel()
            self.running_id, self._transfer = None, None
            return
        if self.client is not None:
            if self.client.alive:
                self.client.cancel(self.running_id, wait=False)
            self.client.forget(self.running_id)
        self.running_id = None

    def finish(self, scene, moving_node, result: dict) -> dict:
        """Result nodes for a result event: ROI segmentations and the transform (placed above the moving volume
        and its pre-alignment)."""
        if self.client is not None and self.client.remote and not result.get("local"):  # the worker's files
            local = Path(tempfile.mkdtemp(prefix="result-", dir=self.folder))
            result = dict(result, files={name: str(self.client.download(path, local / Path(path).name))
                                         for name, path in result["files"].items()})
        nodes = results_to_scene(scene, result["files"], moving_node, moving_node.GetName())
        nodes["summary"] = result["summary"]
        nodes["files"] = result["files"]
        return nodes

    def register(self, scene, fixed_node, moving_node, *, on_progress: Optional[StageProgress] = None,
                 **request) -> dict:
        """Register moving to fixed and wait (batch use, tests); adds the result nodes to `scene` and returns
        them with the summary. Keyword arguments as for `start`."""
        self.start(fixed_node, moving_node, **request)
        try:
            result = None
            while result is None:
                for event in self.poll():
                    if event["type"] == "progress" and on_progress is not None:
                        on_progress(event.get("stage", ""), float(event.get("fraction", 0.0)))
                    elif event["type"] == "error":
                        raise WorkerError(event.get("code", "internal"), event.get("message", ""))
                    elif event["type"] == "result":
                        result = {k: v for k, v in event.items() if k not in ("id", "type")}
                if result is None:
                    time.sleep(0.02)
        finally:
            self.abandon()  # nothing when the run ended; otherwise (an error raised here) stop it
        return self.finish(scene, moving_node, result)

    def batch(self, manifest: str, out_dir: str, *, workers: Optional[int] = None, scheduler: Optional[str] = None,
              on_progress: Optional[StageProgress] = None, **settings) -> dict:
        """Register a cohort (`promptregister batch`) in the worker and wait; returns the worker's result: "records"
        (one dict per manifest row: id, status, seconds, pairs, Dice and HD95 before and after, ...), "counts",
        and the paths of summary.csv and summary.html. Paths are the worker's; settings are BatchSettings' fields
        (model, device, preset, options, text, auto, report, ...). The worker's Python needs Dask for workers > 0."""
        if self.running_id is not None:
            raise RuntimeError("a registration is already running; cancel it first")
        request = {"manifest": str(manifest), "out_dir": str(out_dir), "settings": settings}
        if workers is not None:
            request["workers"] = int(workers)
        if scheduler:
            request["scheduler"] = scheduler
        client = self.worker()
        self.running_id = client.send("batch", **request)
        try:
            return client.wait(self.running_id, on_progress=on_progress)
        finally:
            self.running_id = None

    def cancel(self) -> bool:
        """Ask the worker to stop the running registration and return at once; its "cancelled" error event
        arrives through poll(). False when none runs or the worker is gone."""
        if self._transfer is not None:  # volumes or results on their way: stopped here
            self._transfer.cancel()
            return True
        if self.client is None or self.running_id is None or not self.client.alive:
            return False
        return self.client.cancel(self.running_id, wait=False)
