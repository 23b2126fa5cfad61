"""The module's logic without Qt: MRML volumes -> files -> worker -> results -> MRML.

Usable from Slicer's Python console and in tests (slicer-core wheel):

    logic = RegistrationLogic()
    nodes = logic.register(scene, fixed_node, moving_node, markups_node=points, model="classical")
    nodes["transform"], nodes["fixed_segmentation"], nodes["moving_segmentation"], nodes["summary"]
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Dict, Optional

from promptregister.io import write_volume
from promptregister.worker import WorkerClient

from .mrml import point_prompts, results_to_scene, volume_from_node

ProgressCallback = Callable[[str, float], None]


class RegistrationLogic:
    """Owns the worker; turns a request on MRML nodes into a registration and its result nodes.

    Arguments:
        python: interpreter for the worker (default: the current one, i.e. Slicer's Python).
    """

    def __init__(self, python: Optional[str] = None):
        self.python = python
        self.client: Optional[WorkerClient] = None
        self.running_id: Optional[str] = None
        self._written: Dict[str, Path] = {}

    def worker(self) -> WorkerClient:
        """The running worker, started (or restarted after it died) as needed."""
        if self.client is None or self.client.python != (self.python or self.client.python):
            self.close()
            self.client = WorkerClient(python=self.python)
            self.client.start()
        elif not self.client.alive:
            self.client.restart()
            self._written.clear()
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        self._written.clear()

    def volume_file(self, node) -> Path:
        """The node's voxels as a file in the worker's private folder; rewritten only when the data changed
        (the name carries the image's modification time, so the worker never sees stale data)."""
        import hashlib

        import vtk

        client = self.worker()
        image = node.GetImageData()
        matrix = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        geometry = hashlib.sha1(repr([matrix.GetElement(r, c) for r in range(4) for c in range(4)]).encode())
        # voxels (image modification time) and grid (IJK -> RAS); not the node's own time, which changes when
        # it merely observes the result transform
        stamp = f"{node.GetID()}-{image.GetMTime() if image is not None else 0}-{geometry.hexdigest()[:10]}"
        if stamp not in self._written:
            path = Path(client.hello["folder"]) / f"{stamp}.nii.gz"
            write_volume(volume_from_node(node), path)
            self._written[stamp] = path
        return self._written[stamp]

    def start(self, fixed_node, moving_node, *, markups_node=None, text: Optional[str] = None,
              auto: bool = False, sample_points: int = 0, model: str = "auto", device: str = "auto",
              checkpoint: Optional[str] = None, options: Optional[dict] = None,
              out_dir: Optional[str] = None) -> str:
        """Send a registration request and return at once (the GUI polls it); returns the request id."""
        if self.running_id is not None:
            raise RuntimeError("a registration is already running; cancel it first")
        client = self.worker()
        points = point_prompts(markups_node) if markups_node is not None else []
        out_dir = out_dir or tempfile.mkdtemp(prefix="result-", dir=client.hello["folder"])
        request = dict(fixed=str(self.volume_file(fixed_node)), moving=str(self.volume_file(moving_node)),
                       points=points, auto=auto, sample_points=sample_points, model=model, device=device,
                       options=options or {}, out_dir=out_dir, overwrite=True)
        if text:
            request["text"] = text
        if checkpoint:
            request["checkpoint"] = checkpoint
        self.running_id = client.send("register", **request)
        return self.running_id

    def poll(self) -> list:
        """Events of the running registration so far (progress, log, and at the end result or error)."""
        if self.running_id is None or self.client is None:
            return []
        events = self.client.poll(self.running_id)
        if any(event.get("type") in ("result", "error") for event in events):
            self.running_id = None
        return events

    def finish(self, scene, moving_node, result: dict) -> dict:
        """Result nodes for a result event: ROI segmentations and the transform (observed by the moving volume)."""
        nodes = results_to_scene(scene, result["files"], moving_node, moving_node.GetName())
        nodes["summary"] = result["summary"]
        nodes["files"] = result["files"]
        return nodes

    def register(self, scene, fixed_node, moving_node, *, on_progress: Optional[ProgressCallback] = None,
                 **request) -> dict:
        """Register moving to fixed and wait (batch use, tests); adds the result nodes to `scene` and returns
        them with the summary. Keyword arguments as for `start`."""
        request_id = self.start(fixed_node, moving_node, **request)
        try:
            result = self.client.wait(request_id, on_progress=on_progress)
        finally:
            self.running_id = None
        return self.finish(scene, moving_node, result)

    def cancel(self) -> bool:
        """Stop the running registration (nothing is written); False when none runs."""
        if self.client is None or self.running_id is None:
            return False
        return self.client.cancel(self.running_id)
