"""Run by test_slicer_side.py in a fresh interpreter: open the panel as a stock 3D Slicer would, where torch,
scikit-image and the model packages do not exist.

The import system refuses those packages (and importlib.metadata does not find them, as in a Slicer without
them); the application's GUI parts are the FAKE stand-ins of slicer_standins.py; the scene is a real
vtkMRMLScene. Prints one JSON object with what it saw.
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import json
import sys
from pathlib import Path

REFUSED = ("torch", "torchvision", "skimage", "segment_anything", "mobile_sam", "transformers", "groundingdino",
           "onnxruntime", "onnx", "timm")
REFUSED_DISTRIBUTIONS = {"torch", "torchvision", "scikit-image", "scikit_image", "segment-anything",
                         "segment_anything", "mobilesam-mirror", "mobilesam_mirror", "transformers", "timm",
                         "groundingdino-py", "onnxruntime", "onnx"}


class StockSlicerImports(importlib.abc.MetaPathFinder):
    """Refuses what a stock Slicer lacks, both to `import` and to importlib.metadata."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {name!r} (refused: a stock Slicer has no {name})", name=name)
        return None

    def find_distributions(self, context=importlib.metadata.DistributionFinder.Context()):
        if context.name is not None and context.name.lower() in REFUSED_DISTRIBUTIONS:
            raise importlib.metadata.PackageNotFoundError(context.name)
        return iter(())


def main() -> None:
    sys.meta_path.insert(0, StockSlicerImports())
    testing = Path(__file__).resolve().parent
    sys.path[:0] = [str(testing), str(testing.parent / "PromptRegister")]
    import slicer
    from slicer_standins import Dialogs, install

    report = {}
    dialogs = Dialogs()
    install(slicer, dialogs)
    slicer.mrmlScene = slicer.vtkMRMLScene()
    for name in ("dependencies", "installer", "registration_run", "module_logic", "results_panel", "mrml",
                 "parameters", "resample", "settings", "transforms", "views", "interactive", "interactive_panel",
                 "pipes", "first_use", "transfers"):
        __import__(f"PromptRegisterLib.{name}")
    import PromptRegister

    widget = PromptRegister.PromptRegisterWidget()
    widget.setup()
    widget.enter()
    ui = widget.ui
    report["logic"] = type(widget.logic).__name__
    report["parameter_node_in_scene"] = (widget.parameterNode is not None
                                         and slicer.mrmlScene.IsNodePresent(widget.parameterNode) == 1)
    report["register_connected"] = bool(ui.registerButton.connections["clicked(bool)"])
    report["models"] = ui.modelComboBox.items
    report["worker_started_on_enter"] = widget.logic._registration is not None
    report["unmet"] = sorted(widget.logic.unmetRequirements(""))

    # two volumes loaded after the panel opened (as a user drags them in): the first fills both selectors, as an
    # empty qMRMLNodeComboBox does; the second must become the moving volume, and Register available
    import numpy as np
    from PromptRegisterLib.mrml import node_from_volume
    from promptregister.geometry import Geometry
    from promptregister.volume import Volume

    for name in ("fixed", "moving"):
        node_from_volume(slicer.mrmlScene, Volume(np.zeros((4, 5, 6), np.float32), Geometry.create((6, 5, 4))), name)
    report["preselected"] = [getattr(ui, n).currentNode().GetName() if getattr(ui, n).currentNode() else None
                             for n in ("fixedVolumeSelector", "movingVolumeSelector")]
    report["register_enabled"] = ui.registerButton.enabled

    # Register without torch and without the PyTorch extension: told to install the extension
    ui.registerButton.emit("clicked(bool)", False)
    report["error_without_extension"] = dialogs.errors[-1] if dialogs.errors else None
    # with the PyTorch extension present: offered an installation that names the build; the user declines
    sys.modules["PyTorchUtils"] = type(sys)("PyTorchUtils")
    ui.registerButton.emit("clicked(bool)", False)
    report["install_offer"] = dialogs.confirmations[-1] if dialogs.confirmations else None
    report["installing_after_decline"] = widget.logic.installing
    # Interactive > Start without the packages: told to install them through Register; no worker, no nodes
    ui.interactiveStartButton.emit("clicked(bool)", False)
    report["interactive_start_error"] = dialogs.errors[-1] if dialogs.errors else None
    report["interactive_active"] = widget.interactive.active
    report["interactive_timer_active"] = widget.interactiveTimer.isActive()
    report["running"] = widget.logic.running
    report.update(interactive_with_a_worker_command(widget, dialogs))
    report["heavy_modules_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in REFUSED)
    widget.cleanup()
    print(json.dumps(report))


def interactive_with_a_worker_command(widget, dialogs) -> dict:
    """The interactive section of a stock Slicer with a worker started by a command (as an SSH worker is; here
    this machine's Python, which has the packages): a point deleted with the place widget, two more placed (both
    must reach the worker); the worker killed during a fit (an error is shown, and Start works again)."""
    import time

    from mrml_helpers import clicks_on_labels
    from PromptRegisterLib.mrml import node_from_volume
    from PromptRegisterLib.settings import MachineSettings
    from promptregister import sample_data
    from promptregister.io import read_label_map, read_volume

    report = {}
    ui = widget.ui
    fixed = node_from_volume(slicer_scene(), read_volume(sample_data.sample_path(f"{sample_data.FIXED}_t1.nii.gz")),
                             "sample fixed")
    moving = node_from_volume(slicer_scene(), read_volume(sample_data.sample_path(f"{sample_data.MOVING}_t1.nii.gz")),
                              "sample moving")
    labels = read_label_map(sample_data.sample_path(f"{sample_data.MOVING}_hippocampus.nii.gz"))
    ui.fixedVolumeSelector.setCurrentNode(fixed)
    ui.movingVolumeSelector.setCurrentNode(moving)
    widget.logic.saveMachineSettings(MachineSettings(worker_command=f"{sys.executable} -m promptregister.worker"))
    ui.modelComboBox.user_sets("currentText", "classical", "currentIndexChanged(int)")
    ui.marginalSpinBox.user_sets("value", 0, "valueChanged(int)")
    errors = len(dialogs.errors)
    ui.interactiveStartButton.emit("clicked(bool)", False)
    report["interactive_started_with_command"] = widget.interactive.active and len(dialogs.errors) == errors

    def settle(timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while widget.interactive.active and widget.interactive.loop.pending and time.monotonic() < deadline:
            widget.onInteractivePoll()
            time.sleep(0.05)

    if not report["interactive_started_with_command"]:
        return report
    clicks = ui.clicksPlaceWidget.currentNode()
    points = clicks_on_labels(slicer_scene(), labels, 1, 3)
    positions = []
    for index in range(points.GetNumberOfControlPoints()):
        ras = [0.0, 0.0, 0.0]
        points.GetNthControlPointPositionWorld(index, ras)
        positions.append(ras)
    clicks.AddControlPointWorld(*positions[0])
    settle()
    clicks.RemoveNthControlPoint(0)  # the place widget's Delete
    for ras in positions:
        clicks.AddControlPointWorld(*ras)
    settle()
    report["pairs_after_delete_and_two_more"] = len(widget.interactive.loop.pairs)
    ui.updateTransformButton.emit("clicked(bool)", False)
    widget.interactive.loop.client.process.kill()  # the worker dies during the fit
    deadline = time.monotonic() + 60
    while widget.interactive.active and time.monotonic() < deadline:
        widget.onInteractivePoll()
        time.sleep(0.05)
    report["death_reported"] = (not widget.interactive.active and len(dialogs.errors) > errors
                                and "worker stopped" in dialogs.errors[-1])
    errors = len(dialogs.errors)
    ui.interactiveStartButton.emit("clicked(bool)", False)
    report["started_again"] = widget.interactive.active and len(dialogs.errors) == errors
    widget.interactive.close()
    return report


def slicer_scene():
    import slicer

    return slicer.mrmlScene


if __name__ == "__main__":
    main()
