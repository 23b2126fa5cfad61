"""PromptRegister: training-free, prompt-driven registration in 3D Slicer.

Module, Widget, Logic and Test as Slicer's scripted-module template lays them
out. The Widget only binds the .ui to the parameter node and calls the Logic;
MRML handling lives in PromptRegisterLib (no Qt, tested under slicer-core);
the heavy work runs in a background worker process (promptregister.worker),
so Slicer stays responsive.
"""

from __future__ import annotations

import os
import sys

import qt
import slicer
import vtk  # noqa: F401  (Slicer's scripted modules expect it loaded)
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
if MODULE_DIR not in sys.path:  # the engine package and PromptRegisterLib sit beside this file
    sys.path.insert(0, MODULE_DIR)

REQUIRED_PACKAGES = {  # import name -> pip requirement, installed on first use
    "torch": "torch",
    "SimpleITK": "SimpleITK>=2.3",
    "skimage": "scikit-image>=0.21",
    "scipy": "scipy>=1.10",
    "tqdm": "tqdm>=4.60",
    "segment_anything": "segment-anything==1.0",
    "mobile_sam": "mobilesam-mirror==1.0.0",
    "timm": "timm>=0.9",
    "torchvision": "torchvision",
    "transformers": "transformers>=4.40",
}


class PromptRegister(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "PromptRegister"
        self.parent.categories = ["Registration"]
        self.parent.dependencies = []
        self.parent.contributors = ["PromptRegister developers"]
        self.parent.helpText = (
            "Register a moving volume to a fixed volume from a text prompt (Tell2Reg), points clicked on the "
            "moving volume (PromptReg) or automatically (SAMReg). Segment Anything finds corresponding regions; "
            "a smooth displacement field aligns them. The result is a grid transform applied to the moving "
            "volume and two segmentations whose segment k corresponds. See the user guide in docs/.")
        self.parent.acknowledgementText = (
            "Implements SAMReg, PromptReg and Tell2Reg (Yipeng Hu's group, UCL). Uses Segment Anything (Meta AI), "
            "MobileSAM, MedSAM and GroundingDINO (IDEA Research).")


# -- Widget ----------------------------------------------------------------------------------------
class PromptRegisterWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds the .ui to the parameter node and calls the Logic; no registration code here."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.parameterNode = None
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.connect("timeout()", self.onPoll)
        self._updating = False

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PromptRegister.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        from PromptRegisterLib.parameters import DEVICES, MODELS

        self.ui.modelComboBox.addItems(list(MODELS))
        self.ui.deviceComboBox.addItems(list(DEVICES))
        self.ui.resultsTable.setHorizontalHeaderLabels(["pair", "source", "similarity", "Dice"])
        self.logic = PromptRegisterLogic()

        for selector in (self.ui.fixedVolumeSelector, self.ui.movingVolumeSelector, self.ui.pointsSelector):
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        self.ui.pointsSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.pointsPlaceWidget.setCurrentNode)
        for checkBox in (self.ui.useTextCheckBox, self.ui.usePointsCheckBox, self.ui.useAutoCheckBox):
            checkBox.connect("toggled(bool)", self.updateParameterNodeFromGUI)
        self.ui.textLineEdit.connect("textChanged(QString)", self.updateParameterNodeFromGUI)
        for comboBox in (self.ui.modelComboBox, self.ui.deviceComboBox):
            comboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        for pathEdit in (self.ui.workerPythonLineEdit, self.ui.checkpointLineEdit):
            pathEdit.connect("currentPathChanged(QString)", self.updateParameterNodeFromGUI)
        for spinBox in (self.ui.searchSpinBox, self.ui.thresholdSpinBox, self.ui.marginalSpinBox,
                        self.ui.sliceStepSpinBox, self.ui.gridSpacingSpinBox, self.ui.smoothnessSpinBox,
                        self.ui.seedSpinBox):
            spinBox.connect("valueChanged(double)" if "Double" in spinBox.className() else "valueChanged(int)",
                            self.updateParameterNodeFromGUI)

        self.ui.registerButton.connect("clicked(bool)", self.onRegister)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.showRoisCheckBox.connect("toggled(bool)", self.onShowRois)
        self.ui.applyTransformButton.connect("toggled(bool)", self.onApplyTransform)
        self.ui.hardenTransformButton.connect("clicked(bool)", self.onHardenTransform)
        self.ui.layoutButton.connect("clicked(bool)", self.onSideBySide)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()
        self.timer.stop()
        if self.logic is not None:
            self.logic.close()

    def enter(self):
        from PromptRegisterLib.mrml import restore_interpolation

        restore_interpolation(slicer.mrmlScene)  # for a scene loaded before this widget existed
        self.initializeParameterNode()

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndImport(self, caller, event):
        from PromptRegisterLib.mrml import restore_interpolation

        restore_interpolation(slicer.mrmlScene)  # our grid transforms interpolate like the engine again

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node <-> GUI --------------------------------------------------------------------------
    def initializeParameterNode(self):
        from PromptRegisterLib.parameters import find_or_create_parameter_node

        self.setParameterNode(find_or_create_parameter_node(slicer.mrmlScene))

    def setParameterNode(self, node):
        if self.parameterNode is not None:
            self.removeObserver(self.parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.parameterNode = node
        if node is not None:
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None):
        if self.parameterNode is None or self._updating:
            return
        from PromptRegisterLib.parameters import get_node, read_parameters

        self._updating = True
        try:
            values = read_parameters(self.parameterNode)
            self.ui.fixedVolumeSelector.setCurrentNode(get_node(self.parameterNode, "fixedVolume"))
            self.ui.movingVolumeSelector.setCurrentNode(get_node(self.parameterNode, "movingVolume"))
            self.ui.pointsSelector.setCurrentNode(get_node(self.parameterNode, "pointPrompts"))
            self.ui.useTextCheckBox.checked = values.use_text
            self.ui.usePointsCheckBox.checked = values.use_points
            self.ui.useAutoCheckBox.checked = values.use_auto
            self.ui.textLineEdit.text = values.text
            self.ui.modelComboBox.currentText = values.model
            self.ui.deviceComboBox.currentText = values.device
            self.ui.workerPythonLineEdit.currentPath = values.worker_python
            self.ui.checkpointLineEdit.currentPath = values.checkpoint
            self.ui.searchSpinBox.value = values.search_mm
            self.ui.thresholdSpinBox.value = values.threshold
            self.ui.marginalSpinBox.value = values.marginal_samples
            self.ui.sliceStepSpinBox.value = values.slice_step
            self.ui.gridSpacingSpinBox.value = values.grid_spacing_mm
            self.ui.smoothnessSpinBox.value = values.smoothness
            self.ui.seedSpinBox.value = values.seed
            self.fillResults(values.last_summary)
            ready = (self.ui.fixedVolumeSelector.currentNode() is not None
                     and self.ui.movingVolumeSelector.currentNode() is not None)
            running = self.logic is not None and self.logic.running
            self.ui.registerButton.enabled = ready and not running
            self.ui.cancelButton.enabled = running
        finally:
            self._updating = False

    def updateParameterNodeFromGUI(self, *args):
        if self.parameterNode is None or self._updating:
            return
        from PromptRegisterLib.parameters import read_parameters, set_node, write_parameters

        self._updating = True
        try:
            values = read_parameters(self.parameterNode)
            values.use_text = self.ui.useTextCheckBox.checked
            values.use_points = self.ui.usePointsCheckBox.checked
            values.use_auto = self.ui.useAutoCheckBox.checked
            values.text = self.ui.textLineEdit.text
            values.model = self.ui.modelComboBox.currentText
            values.device = self.ui.deviceComboBox.currentText
            values.worker_python = self.ui.workerPythonLineEdit.currentPath
            values.checkpoint = self.ui.checkpointLineEdit.currentPath
            values.search_mm = self.ui.searchSpinBox.value
            values.threshold = self.ui.thresholdSpinBox.value
            values.marginal_samples = self.ui.marginalSpinBox.value
            values.slice_step = self.ui.sliceStepSpinBox.value
            values.grid_spacing_mm = self.ui.gridSpacingSpinBox.value
            values.smoothness = self.ui.smoothnessSpinBox.value
            values.seed = self.ui.seedSpinBox.value
            wasModifying = self.parameterNode.StartModify()
            if values.use_text or values.use_points or values.use_auto:
                write_parameters(self.parameterNode, values)
            set_node(self.parameterNode, "fixedVolume", self.ui.fixedVolumeSelector.currentNode())
            set_node(self.parameterNode, "movingVolume", self.ui.movingVolumeSelector.currentNode())
            set_node(self.parameterNode, "pointPrompts", self.ui.pointsSelector.currentNode())
            self.parameterNode.EndModify(wasModifying)
        finally:
            self._updating = False
        self.updateGUIFromParameterNode()

    # -- actions ----------------------------------------------------------------------------------------
    def onRegister(self):
        from PromptRegisterLib.parameters import read_parameters

        values = read_parameters(self.parameterNode)
        try:
            if not self.logic.ensureDependencies():
                return
            self.logic.start(self.parameterNode, values)
        except Exception as error:  # shown to the user, not a traceback in the console only
            slicer.util.errorDisplay(f"Registration could not start: {error}")
            return
        self.ui.progressBar.value = 0
        self.ui.stageLabel.text = "starting the worker..."
        self.timer.start()
        self.updateGUIFromParameterNode()

    def onPoll(self):
        try:
            events = self.logic.poll()
        except Exception as error:
            self.timer.stop()
            slicer.util.errorDisplay(f"The registration worker stopped: {error}")
            self.updateGUIFromParameterNode()
            return
        for event in events:
            kind = event.get("type")
            if kind == "progress":
                self.ui.stageLabel.text = event.get("stage", "")
                self.ui.progressBar.value = int(100 * float(event.get("fraction", 0.0)))
            elif kind == "error":
                self.timer.stop()
                self.ui.stageLabel.text = "cancelled" if event.get("code") == "cancelled" else "failed"
                if event.get("code") != "cancelled":
                    slicer.util.errorDisplay(event.get("message", "registration failed"))
            elif kind == "result":
                self.timer.stop()
                self.logic.finish(self.parameterNode, event)
                self.ui.stageLabel.text = "done"
                self.ui.progressBar.value = 100
        self.updateGUIFromParameterNode()

    def onCancel(self):
        if self.logic.cancel():
            self.ui.stageLabel.text = "cancelling..."

    def fillResults(self, summary):
        pairs = (summary or {}).get("pairs", [])
        table = self.ui.resultsTable
        table.setRowCount(len(pairs))
        for row, pair in enumerate(pairs):
            source = pair.get("source", {})
            cells = [pair.get("name", ""), source.get("method", ""), f"{pair.get('score', 0):.3f}",
                     f"{pair.get('dice_after', 0):.3f}"]
            for column, text in enumerate(cells):
                table.setItem(row, column, qt.QTableWidgetItem(text))
        if summary:
            self.ui.summaryLabel.text = (f"{len(pairs)} pairs; mean Dice after {summary.get('mean_dice_after')}; "
                                         f"folding {summary.get('jacobian', {}).get('folding_percent', 0):.3f}%")

    def onShowRois(self, visible):
        self.logic.setRoisVisible(self.parameterNode, visible)

    def onApplyTransform(self, applied):
        self.logic.setTransformApplied(self.parameterNode, applied)

    def onHardenTransform(self):
        self.logic.hardenTransform(self.parameterNode)

    def onSideBySide(self):
        self.logic.showSideBySide(self.parameterNode)


# -- Logic ------------------------------------------------------------------------------------------
class PromptRegisterLogic(ScriptedLoadableModuleLogic):
    """The module's logic in Slicer: dependencies, the worker (PromptRegisterLib.logic) and the views.

    Batch use from the Python console:
        logic = slicer.modules.promptregister.widgetRepresentation().self().logic  # or PromptRegisterLogic()
        nodes = logic.registerVolumes(fixedNode, movingNode, markups_node=pointsNode, model="classical")
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._registration = None
        self._movingNode = None

    # -- set-up ------------------------------------------------------------------------------------
    @staticmethod
    def missingPackages():
        import importlib.util

        return [requirement for name, requirement in REQUIRED_PACKAGES.items()
                if importlib.util.find_spec(name) is None]

    def ensureDependencies(self, ask=True):
        """Offer to install what the engine needs into Slicer's Python (PyTorch through SlicerPyTorch when
        that extension is installed). Returns True when everything is present."""
        missing = self.missingPackages()
        if not missing:
            return True
        message = ("PromptRegister needs these Python packages in Slicer's Python:\n  " + "\n  ".join(missing)
                   + "\n\nPyTorch alone is about 1-3 GB to download. Install them now?")
        if ask and not slicer.util.confirmOkCancelDisplay(message):
            return False
        if "torch" in missing:
            try:
                import PyTorchUtils  # the SlicerPyTorch extension picks the right CUDA build

                PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False)
                missing.remove("torch")
            except ImportError:
                pass
        slicer.util.pip_install(" ".join(missing))  # requirements carry no spaces, so a plain join is safe
        return not self.missingPackages()

    def registration(self, workerPython=""):
        from PromptRegisterLib.logic import RegistrationLogic

        if self._registration is None or (self._registration.python or "") != (workerPython or ""):
            if self._registration is not None:
                self._registration.close()
            self._registration = RegistrationLogic(python=workerPython or None)
        return self._registration

    @property
    def running(self):
        return self._registration is not None and self._registration.running_id is not None

    def close(self):
        if self._registration is not None:
            self._registration.close()

    # -- registration ----------------------------------------------------------------------------------
    def start(self, parameterNode, values):
        from PromptRegisterLib.parameters import get_node

        values.validate()
        fixed, moving = get_node(parameterNode, "fixedVolume"), get_node(parameterNode, "movingVolume")
        if fixed is None or moving is None:
            raise ValueError("choose a fixed and a moving volume")
        markups = get_node(parameterNode, "pointPrompts") if values.use_points else None
        if values.use_points and (markups is None or markups.GetNumberOfControlPoints() == 0):
            raise ValueError("place at least one point on the moving volume, or untick Points")
        if values.use_text and not values.text.strip(" ,."):
            raise ValueError("type a text prompt, or untick Text")
        self._movingNode = moving
        return self.registration(values.worker_python).start(
            fixed, moving, markups_node=markups, text=values.text if values.use_text else None,
            auto=values.use_auto, model=values.model, device=values.device, checkpoint=values.checkpoint or None,
            options=values.request_options())

    def poll(self):
        return self._registration.poll() if self._registration is not None else []

    def cancel(self):
        return self._registration is not None and self._registration.cancel()

    def finish(self, parameterNode, resultEvent):
        from PromptRegisterLib.parameters import read_parameters, set_node, write_parameters

        result = {key: value for key, value in resultEvent.items() if key not in ("id", "type")}
        nodes = self._registration.finish(slicer.mrmlScene, self._movingNode, result)
        set_node(parameterNode, "outputTransform", nodes["transform"])
        set_node(parameterNode, "fixedSegmentation", nodes["fixed_segmentation"])
        set_node(parameterNode, "movingSegmentation", nodes["moving_segmentation"])
        values = read_parameters(parameterNode)
        values.last_summary = nodes["summary"]
        write_parameters(parameterNode, values)
        return nodes

    def registerVolumes(self, fixedNode, movingNode, **request):
        """Register and wait (console, batch, tests); see PromptRegisterLib.logic.RegistrationLogic.register."""
        return self.registration().register(slicer.mrmlScene, fixedNode, movingNode, **request)

    # -- views ------------------------------------------------------------------------------------------
    def setRoisVisible(self, parameterNode, visible):
        from PromptRegisterLib.parameters import get_node

        for role in ("fixedSegmentation", "movingSegmentation"):
            node = get_node(parameterNode, role)
            if node is not None and node.GetDisplayNode() is not None:
                node.GetDisplayNode().SetVisibility(bool(visible))

    def setTransformApplied(self, parameterNode, applied):
        from PromptRegisterLib.parameters import get_node

        moving, transform = get_node(parameterNode, "movingVolume"), get_node(parameterNode, "outputTransform")
        if moving is not None:
            moving.SetAndObserveTransformNodeID(transform.GetID() if applied and transform is not None else None)

    def hardenTransform(self, parameterNode):
        from PromptRegisterLib.parameters import get_node

        moving = get_node(parameterNode, "movingVolume")
        if moving is not None and moving.GetTransformNodeID():
            slicer.vtkSlicerTransformLogic().hardenTransform(moving)

    def showSideBySide(self, parameterNode):
        from PromptRegisterLib.parameters import get_node

        fixed, moving = get_node(parameterNode, "fixedVolume"), get_node(parameterNode, "movingVolume")
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutThreeOverThreeView)
        for name, background, foreground in (("Red", fixed, None), ("Yellow", moving, None), ("Green", fixed, moving)):
            composite = layoutManager.sliceWidget(name).mrmlSliceCompositeNode()
            composite.SetBackgroundVolumeID(background.GetID() if background is not None else None)
            composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
            composite.SetForegroundOpacity(0.5)


# -- Test ------------------------------------------------------------------------------------------------
class PromptRegisterTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: a sample volume registered to a shifted copy of itself with the classical backend."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_PromptRegister_classical_points()

    def test_PromptRegister_classical_points(self):
        import numpy as np
        import SampleData

        self.delayDisplay("Loading sample data")
        fixed = SampleData.downloadSample("MRHead")
        moving = slicer.modules.volumes.logic().CloneVolume(slicer.mrmlScene, fixed, "MRHead shifted")
        transform = slicer.vtkMRMLLinearTransformNode()
        slicer.mrmlScene.AddNode(transform)
        matrix = vtk.vtkMatrix4x4()
        matrix.SetElement(0, 3, 4.0)
        transform.SetMatrixTransformToParent(matrix)
        moving.SetAndObserveTransformNodeID(transform.GetID())
        slicer.vtkSlicerTransformLogic().hardenTransform(moving)
        points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "prompts")
        bounds = [0.0] * 6
        moving.GetRASBounds(bounds)
        centre = [(bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2]
        points.AddControlPoint(centre[0], centre[1], centre[2])

        self.delayDisplay("Registering (classical backend)")
        logic = PromptRegisterLogic()
        nodes = logic.registerVolumes(fixed, moving, markups_node=points, model="classical", device="cpu",
                                      options={"marginal_samples": 0})
        self.assertGreaterEqual(nodes["fixed_segmentation"].GetSegmentation().GetNumberOfSegments(), 1)
        self.assertEqual(moving.GetTransformNodeID(), nodes["transform"].GetID())
        # the moving volume is shifted by +4 mm in R, so fixed points map about 4 mm to the right
        mapped = [0.0, 0.0, 0.0]
        nodes["transform"].GetTransformFromParent().TransformPoint(centre, mapped)
        self.assertLess(abs((mapped[0] - centre[0]) - 4.0), 3.0)
        self.assertTrue(np.isfinite(mapped).all())
        logic.close()
        self.delayDisplay("Test passed")
