"""One user's registration in the browser app, without trame: the scene, the three views and the module's logic.

Everything that registers goes through PromptRegisterLib, as in the Slicer panel: RegistrationRun owns the worker,
InteractiveLoop turns clicks into pairs (segmentations and a table in the scene) and fits into one grid transform
node, and loop_status says what the user sees. This class only maps the app's buttons and clicks onto them:
- a click on the moving view: a new pair (the region there, and its counterpart on the fixed volume);
- a click on the fixed view with a pair chosen: that pair's fixed region from the user's own point;
- Register: the image registration alone (a fit with no pair); Update transform: a fit with the pairs;
- delete, undo, auto (segment everything and match), text (a phrase), cancel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional

from promptregister.errors import PromptRegisterError
from PromptRegisterLib.interactive import InteractiveLoop
from PromptRegisterLib.loop_status import pair_rows, running, should_refit, status_line, verdict
from PromptRegisterLib.registration_run import RegistrationRun

from .pair_views import PairViews


class BrowserSession:
    """Arguments:
        scene, volumes_logic: the app's MRML scene and Slicer's volumes logic (reads volume files as Slicer does).
        views: the PairViews of that scene.
        registration: the RegistrationRun that owns the worker (a remote one through `command`, as in Slicer).
        model, device, options: what the interactive session uses (as the panel's model, device and preset).
    """

    def __init__(self, scene, volumes_logic, views: PairViews, registration: Optional[RegistrationRun] = None, *,
                 model: str = "auto", device: str = "auto", options: Optional[dict] = None,
                 checkpoint: Optional[str] = None):
        self.scene = scene
        self.volumes_logic = volumes_logic
        self.views = views
        views.on_click = self.click
        self.registration = registration or RegistrationRun()
        self.model, self.device, self.options, self.checkpoint = model, device, dict(options or {}), checkpoint
        self.loop = InteractiveLoop(self.registration, scene, on_message=self.say)
        self.fixed_node = self.moving_node = None
        self.selected: Optional[str] = None  # the pair a click on the fixed view corrects
        self.after_every_change = False
        self.messages: List[str] = []
        self.progress: Dict[str, dict] = {}  # request kind -> its latest progress event
        self.on_change: Callable[[], None] = lambda: None

    def say(self, text: str) -> None:
        if text:
            self.messages = (self.messages + [text])[-20:]

    # -- volumes -------------------------------------------------------------------------------------------------
    def load(self, fixed_path: Path, moving_path: Path) -> None:
        """Read both volumes (as Slicer reads them), show them, and open the interactive session: the worker
        starts embedding the slices and computing the image registration at once."""
        nodes = []
        for path, role in ((fixed_path, "fixed"), (moving_path, "moving")):
            name = _stem(path)
            if self.scene.GetFirstNodeByName(name) is not None:
                name = self.scene.GenerateUniqueName(name)
            node = self.volumes_logic.AddArchetypeVolume(str(path), name)
            if node is None:
                for made in nodes:
                    self.scene.RemoveNode(made)
                raise PromptRegisterError(f"the {role} volume {Path(path).name} could not be read as a volume "
                                          "(a NIfTI, NRRD or MetaImage file)")
            nodes.append(node)
        self.close_session()
        for old in (self.fixed_node, self.moving_node):
            if old is not None and self.scene.IsNodePresent(old):
                self.scene.RemoveNode(old)
        self.fixed_node, self.moving_node = nodes
        self.views.show_volumes(self.fixed_node, self.moving_node)
        self.loop.open(self.fixed_node, self.moving_node, model=self.model, device=self.device,
                       options=self.options, checkpoint=self.checkpoint)
        self.views.show_segmentations(self.loop.nodes["fixed_segmentation"], self.loop.nodes["moving_segmentation"])
        self.say(f"Loaded {self.fixed_node.GetName()} (fixed) and {self.moving_node.GetName()} (moving). Click the "
                 "moving view on a structure to pair it, or press Register for the image registration alone.")

    @property
    def ready(self) -> bool:
        return self.loop.session is not None

    def _need_session(self) -> None:
        if not self.ready:
            raise PromptRegisterError("open a fixed and a moving volume first")

    # -- the user's actions --------------------------------------------------------------------------------------
    def click(self, view: str, ras: List[float]) -> None:
        """A click on a view (from PairViews): a new pair on the moving view, a correction on the fixed one."""
        if not self.ready:
            return
        if view == "Moving":
            self.loop.click(ras)
            self.say("Finding the region under the click and its counterpart on the fixed volume...")
        elif view == "Fixed":
            if self.selected not in self.loop.pairs:
                self.say("To correct a pair, choose it in the table first, then click where it is on the fixed view.")
                return
            self.loop.correct(self.selected, ras)
            self.say(f"Correcting {self.selected} from your point on the fixed view...")
        self.on_change()

    def register(self) -> None:
        """The image registration alone (no prompt), or, once there are pairs, the fit with them."""
        self._need_session()
        self.loop.update_transform()

    def update_transform(self) -> None:
        self._need_session()
        self.loop.update_transform()

    def delete(self, pair_id: Optional[str] = None) -> None:
        self._need_session()
        pair_id = pair_id or self.selected
        if pair_id not in self.loop.pairs:
            raise PromptRegisterError("choose the pair to delete in the table first")
        self.loop.delete(pair_id)
        if self.selected == pair_id:
            self.selected = None

    def undo(self) -> None:
        self._need_session()
        self.loop.undo()

    def auto(self) -> None:
        self._need_session()
        self.loop.auto()

    def text(self, phrase: str) -> None:
        self._need_session()
        if not phrase.strip():
            raise PromptRegisterError("type what to find on both volumes (for example 'hippocampus')")
        self.loop.text(phrase.strip())

    def cancel(self) -> None:
        if self.ready:
            self.loop.cancel()

    def set_opacity(self, opacity: float) -> None:
        self.views.set_opacity(opacity)

    # -- answers ---------------------------------------------------------------------------------------------
    def poll(self) -> List[dict]:
        """Apply the worker's answers (as the panel's timer does); fit again after a change when asked."""
        if not self.ready and not self.loop.pending:
            return []
        events = self.loop.poll()
        for event in events:
            self._tell(event)
            if event.get("type") == "progress":
                self.progress[event.get("kind", "")] = event
            elif event.get("type") in ("result", "error"):
                self.progress.pop(event.get("kind", ""), None)
        if any(e.get("code") == "died" for e in events):
            self.say("The worker stopped; the session ended with it. Open the volumes again to start over.")
        if should_refit(self.loop, events, self.after_every_change):
            self.loop.update_transform()
        if events:
            self.views.render()
        return events

    def _tell(self, event: dict) -> None:
        """A result in words (errors come through the loop's on_message)."""
        if event.get("type") != "result":
            return
        kind = event.get("kind")
        if kind in ("prompt", "correct"):
            pair = event["pair"]
            self.say(f"{pair['id']} {'corrected' if kind == 'correct' else 'added'} (similarity "
                     f"{float(pair.get('similarity', 0)):.2f}). Update transform to register with it.")
        elif kind in ("auto", "text"):
            self.say(f"{len(event.get('pairs', []))} pairs found.")
        elif kind == "fit":
            what = "Transform updated" if self.loop.pairs else "Image registration done"
            self.say(f"{what} in {float(event.get('seconds', 0)):.1f} s.")
        elif kind in ("delete", "undo"):
            self.say("Pairs changed. Update transform to register with the pairs left.")

    def view_state(self) -> dict:
        """What the page shows, as plain values."""
        loop = self.loop
        summary = loop.last_fit["summary"] if loop.last_fit else None
        progress = None
        for kind, event in self.progress.items():  # the latest request's (the embedding is in the status line)
            if kind != "background":
                progress = {"kind": kind, "stage": event.get("stage", ""), "fraction": float(event.get("fraction", 0))}
        cursor = ""
        if self.views.cursor is not None:
            name, ras = self.views.cursor
            cursor = f"{name}: R {ras[0]:.1f}, A {ras[1]:.1f}, S {ras[2]:.1f} mm"
        return {
            "ready": self.ready,
            "rows": pair_rows(loop) if self.ready else [],
            "status": status_line(loop) if self.ready else "Open a fixed and a moving volume.",
            "verdict": verdict(summary),
            "working": running(loop),
            "progress": progress,
            "has_transform": loop.last_fit is not None,
            "message": self.messages[-1] if self.messages else "",
            "selected": self.selected,
            "cursor": cursor,
            "view_geometry": self.views.geometry(),
        }

    # -- results -------------------------------------------------------------------------------------------------
    def transform_file(self) -> Path:
        """The last fit's transform (ITK .h5: a displacement field on the fixed grid, LPS, fixed -> moving)."""
        if self.loop.last_fit is None:
            raise PromptRegisterError("there is no transform yet: press Register or Update transform first")
        return Path(self.loop.last_fit["transform"])

    def close_session(self) -> None:
        if self.loop.session is not None:
            self.loop.close_session()
        for node in list(self.loop.nodes.values()):
            if node is not None and self.scene.IsNodePresent(node):
                self.scene.RemoveNode(node)
        self.loop.nodes.clear()
        self.selected, self.progress = None, {}

    def close(self) -> None:
        """End the session and stop the worker (its private folder goes with it)."""
        self.close_session()
        self.registration.close(wait=False)


def _stem(path: Path) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name

