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
    for name in ("dependencies", "installer", "logic", "module_logic", "mrml", "parameters", "resample",
                 "settings", "transforms", "views", "interactive", "interactive_panel", "pipes"):
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
    report["heavy_modules_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in REFUSED)
    widget.cleanup()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
