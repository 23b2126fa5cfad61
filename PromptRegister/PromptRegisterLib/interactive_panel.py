"""The panel's Interactive section: its widgets bound to an InteractiveLoop.

Kept out of PromptRegister.py so the Widget stays thin. No Qt import: the widgets are the .ui's (given), the
Widget's timer calls poll(), and dialogs go through `error_display`. The user:
1. presses Start (the fixed and moving volumes, model and preset of the panel above);
2. places points on the moving volume: each becomes a pair, drawn in both views in one colour, with a row in
   the pairs table;
3. picks a pair in the list to delete it, or places a point on the fixed volume to correct it;
4. presses Update transform (or ticks "after every change"): the same transform node moves the volume again;
5. Undo reverts the last change.
"""

from __future__ import annotations

from typing import Callable, List

import slicer
import vtk

from .loop_status import should_refit, status_line
from .parameters import get_node, read_parameters


class InteractivePanel:
    def __init__(self, ui, logic, parameter_node: Callable[[], object], error_display: Callable[[str], None]):
        self.ui = ui
        self.logic = logic  # ModuleLogic
        self.parameter_node = parameter_node
        self.error_display = error_display
        self.loop = None
        self.messages: List[str] = []
        self.clicks = self.corrections = None  # markups nodes
        self._observations: List[tuple] = []

    def setup(self) -> None:
        ui = self.ui  # Start is the Widget's: it starts its poll timer once start() has opened a session
        ui.deletePairButton.connect("clicked(bool)", self.delete)
        ui.undoButton.connect("clicked(bool)", self.undo)
        ui.updateTransformButton.connect("clicked(bool)", self.update_transform)
        ui.autoPairsButton.connect("clicked(bool)", self.auto)
        self.refresh()

    # -- actions ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        node = self.parameter_node()
        fixed, moving = get_node(node, "fixedVolume"), get_node(node, "movingVolume")
        if fixed is None or moving is None:
            self.error_display("Choose a fixed and a moving volume first.")
            return
        settings = self.logic.machineSettings()
        if not settings.worker_command and self.logic.knownUnmetRequirements(settings.worker_python):
            self.error_display("The worker's Python lacks packages PromptRegister needs. Press Register once: it "
                               "offers to install them. Then press Start again.")
            return
        values = read_parameters(node)
        self.close()
        try:
            self.loop = self.logic.interactiveLoop(onMessage=self.messages.append)
            self.loop.open(fixed, moving, model=values.model, device=values.device,
                           options=values.request_options(), checkpoint=settings.checkpoint or None)
        except (ValueError, RuntimeError) as error:
            self.loop = None
            self.error_display(f"The interactive session could not start: {error}")
            return
        self.clicks = self._markups(f"{moving.GetName()} clicks", (0.9, 0.9, 0.2))
        self.corrections = self._markups(f"{fixed.GetName()} corrections", (0.2, 0.9, 0.9))
        self.ui.clicksPlaceWidget.setCurrentNode(self.clicks)
        self.ui.correctionPlaceWidget.setCurrentNode(self.corrections)
        self.ui.pairsTableView.setMRMLTableNode(self.loop.nodes["table"])
        self.refresh()

    def _markups(self, name: str, colour) -> object:
        scene = slicer.mrmlScene
        node = slicer.vtkMRMLMarkupsFiducialNode()
        node.SetName(scene.GenerateUniqueName(name))
        scene.AddNode(node)
        node.CreateDefaultDisplayNodes()
        if node.GetDisplayNode() is not None:
            node.GetDisplayNode().SetSelectedColor(*colour)
        tag = node.AddObserver(slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.on_point_placed)
        self._observations.append((node, tag))
        return node

    @vtk.calldata_type(vtk.VTK_INT)
    def on_point_placed(self, caller, event=None, index=None) -> None:
        """A point placed on the moving volume becomes a new pair; one on the fixed volume corrects the pair
        chosen in the list. `index` is the point's, from the event (vtkMRMLMarkupsNode invokes
        PointPositionDefinedEvent with it): after the place widget's Delete, points are no longer numbered by
        how many were placed."""
        if self.loop is None:
            return
        if index is None or not 0 <= index < caller.GetNumberOfControlPoints():
            index = caller.GetNumberOfControlPoints() - 1
        ras = [0.0, 0.0, 0.0]
        caller.GetNthControlPointPositionWorld(index, ras)
        if caller is self.clicks:
            self.loop.click(ras)
        else:
            pair = self.ui.pairComboBox.currentText
            if not pair:
                self.messages.append("choose the pair to correct in the list first")
                return
            self.loop.correct(pair, ras)
            caller.SetNthControlPointLabel(index, f"{pair} fix")
        self.refresh()

    def delete(self) -> None:
        if self.loop is not None and self.ui.pairComboBox.currentText:
            self.loop.delete(self.ui.pairComboBox.currentText)

    def undo(self) -> None:
        if self.loop is not None:
            self.loop.undo()

    def update_transform(self) -> None:
        if self.loop is not None:
            self.loop.update_transform()
            self.refresh()

    def auto(self) -> None:
        if self.loop is not None:
            self.loop.auto()

    def close(self) -> None:
        for node, tag in self._observations:
            node.RemoveObserver(tag)
        self._observations.clear()
        if self.loop is not None:
            self.loop.close_session()
            self.loop = None

    # -- answers ---------------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.loop is not None

    def poll(self) -> None:
        """Apply what the worker answered; after a change, fit again when "after every change" is ticked."""
        if self.loop is None:
            return
        events = self.loop.poll()
        died = [e for e in events if e.get("code") == "died"]
        if died:  # the session died with its worker: say so, and let the user start again
            self.close()
            self.refresh()
            self.error_display(f"The interactive session ended: {died[0].get('message', '')}\n\n"
                               "Press Start to begin again.")
            return
        if should_refit(self.loop, events, self.ui.autoUpdateCheckBox.checked):
            self.loop.update_transform()
        if self.messages:
            self.ui.interactiveStatusLabel.text = self.messages[-1]
            self.messages.clear()
        elif events:
            self.refresh()

    def refresh(self) -> None:
        ui, loop = self.ui, self.loop
        active = loop is not None
        for name in ("deletePairButton", "undoButton", "updateTransformButton", "autoPairsButton"):
            setattr(getattr(ui, name), "enabled", active)
        if not active:
            ui.interactiveStatusLabel.text = "Press Start, then place points on the moving volume."
            return
        chosen = ui.pairComboBox.currentText
        ui.pairComboBox.clear()
        ui.pairComboBox.addItems(list(loop.pairs))
        if chosen in loop.pairs:
            ui.pairComboBox.currentText = chosen
        ui.interactiveStatusLabel.text = status_line(loop)
