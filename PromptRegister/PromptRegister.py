"""PromptRegister: training-free, prompt-driven registration in 3D Slicer.

Module, Widget, Logic and Test as Slicer's scripted-module template lays them
out. The Widget only binds the .ui to the parameter node and calls the Logic;
MRML handling lives in PromptRegisterLib (no Qt, tested under slicer-core);
the heavy work runs in a background worker process (promptregister.worker),
so Slicer stays responsive.

This file and PromptRegisterLib import only what a stock Slicer ships (numpy,
scipy, SimpleITK, vtk, qt, ctk, slicer and the standard library): the panel
must open before PyTorch is installed, since it is the panel that offers to
install it. Testing/test_slicer_side.py imports them with torch refused.
"""

from __future__ import annotations

import os
import sys

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
if MODULE_DIR not in sys.path:  # the engine package and PromptRegisterLib sit beside this file
    sys.path.insert(0, MODULE_DIR)

from PromptRegisterLib.dependencies import start_driver_query  # noqa: E402
from PromptRegisterLib.first_use import FirstUse  # noqa: E402
from PromptRegisterLib.interactive_panel import InteractivePanel  # noqa: E402
from PromptRegisterLib.module_logic import ModuleLogic  # noqa: E402
from PromptRegisterLib.mrml import restore_interpolation  # noqa: E402
from PromptRegisterLib.pipes import TICK_MS, let_readers_run  # noqa: E402
from PromptRegisterLib.results_panel import ResultsPanel  # noqa: E402
from PromptRegisterLib.sample_data import register_sample_data  # noqa: E402
from PromptRegisterLib.parameters import (DEVICES, MODELS, PRESETS, find_or_create_parameter_node, get_node,  # noqa: E402
                                          preselect_volumes, read_parameters, set_node, write_parameters)
from PromptRegisterLib.settings import MachineSettings  # noqa: E402
from promptregister.options.panel import PRESET_HELP  # noqa: E402
from PromptRegisterLib.transforms import TransformChainError, user_chain  # noqa: E402


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
            "volume and two segmentations whose segment k corresponds. On first use the panel offers to install "
            "PyTorch (through the PyTorch extension) and the other packages the background worker needs.")
        self.parent.acknowledgementText = (
            "Implements SAMReg, PromptReg and Tell2Reg (Yipeng Hu's group, UCL). Uses Segment Anything (Meta AI), "
            "MobileSAM, MedSAM and GroundingDINO (IDEA Research). The sample pair is from the Medical Segmentation "
            "Decathlon's Task04 Hippocampus (CC BY-SA 4.0) in Learn2Reg 2020's version.")
        slicer.app.connect("startupCompleted()", register_sample_data)  # Sample Data -> "PromptRegister"


def _setIfDifferent(widget, prop: str, value) -> None:
    """Set a widget property only when it differs, so updating the GUI from the parameter node never disturbs
    typing (a text box's cursor, a spin box half-way through "2.")."""
    if getattr(widget, prop) != value:
        setattr(widget, prop, value)


# -- Widget ----------------------------------------------------------------------------------------
class PromptRegisterWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds the .ui to the parameter node and calls the Logic; no registration code here."""

    SPIN_BOXES = {"searchSpinBox": "search_mm", "thresholdSpinBox": "threshold", "marginalSpinBox": "marginal_samples",
                  "sliceStepSpinBox": "slice_step", "gridSpacingSpinBox": "grid_spacing_mm",
                  "smoothnessSpinBox": "smoothness", "seedSpinBox": "seed"}
    CHECK_BOXES = {"useTextCheckBox": "use_text", "usePointsCheckBox": "use_points", "useAutoCheckBox": "use_auto"}
    SELECTORS = {"fixedVolumeSelector": "fixedVolume", "movingVolumeSelector": "movingVolume",
                 "pointsSelector": "pointPrompts", "fixedPointsSelector": "fixedPointPrompts"}

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.parameterNode = None
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.connect("timeout()", self.onPoll)
        self.interactiveTimer = qt.QTimer()  # polls the interactive session while one is open
        self.interactiveTimer.setInterval(100)
        self.pipeTimer = qt.QTimer()  # lets the worker's pipe readers run while a worker is alive (pipes.py)
        self.pipeTimer.setInterval(TICK_MS)
        self.pipeTimer.connect("timeout()", self.onPipeTick)
        self.interactive = None
        self._updating = False
        self.results = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PromptRegister.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.modelComboBox.addItems(list(MODELS))
        self.ui.deviceComboBox.addItems(list(DEVICES))
        self.ui.presetComboBox.addItems(list(PRESETS))
        self.logic = PromptRegisterLogic()
        settings = self.logic.machineSettings()
        self.ui.workerPythonLineEdit.currentPath = settings.worker_python
        self.ui.checkpointLineEdit.currentPath = settings.checkpoint
        self.ui.workerCommandLineEdit.text = settings.worker_command

        for name in self.SELECTORS:
            getattr(self.ui, name).connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        self.ui.pointsSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.pointsPlaceWidget.setCurrentNode)
        self.ui.fixedPointsSelector.connect("currentNodeChanged(vtkMRMLNode*)",
                                            self.ui.fixedPointsPlaceWidget.setCurrentNode)
        for name in self.CHECK_BOXES:
            getattr(self.ui, name).connect("toggled(bool)", self.updateParameterNodeFromGUI)
        self.ui.textLineEdit.connect("textChanged(QString)", self.updateParameterNodeFromGUI)
        for comboBox in (self.ui.modelComboBox, self.ui.deviceComboBox, self.ui.presetComboBox):
            comboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        for pathEdit in (self.ui.workerPythonLineEdit, self.ui.checkpointLineEdit):
            pathEdit.connect("currentPathChanged(QString)", self.onMachineSettingsChanged)
        self.ui.workerCommandLineEdit.connect("editingFinished()", self.onMachineSettingsChanged)
        for name in self.SPIN_BOXES:
            spinBox = getattr(self.ui, name)
            spinBox.connect("valueChanged(double)" if "Double" in spinBox.className() else "valueChanged(int)",
                            self.updateParameterNodeFromGUI)

        self.ui.registerButton.connect("clicked(bool)", self.onRegister)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.firstUse = FirstUse(self.ui, self.logic, self.timer, lambda text: slicer.util.confirmOkCancelDisplay(text),
                                 lambda text: slicer.util.errorDisplay(text))
        self.results = ResultsPanel(self.ui, self.logic, lambda: self.parameterNode, slicer.util.errorDisplay,
                                    qt.QTableWidgetItem)
        self.results.setup()
        self.interactive = InteractivePanel(self.ui, self.logic, lambda: self.parameterNode, slicer.util.errorDisplay)
        self.interactive.setup()
        # a Python slot: PythonQt would hand clicked's False to QTimer.start, a 0 ms timer (one core busy)
        self.ui.interactiveStartButton.connect("clicked(bool)", self.onInteractiveStart)
        self.interactiveTimer.connect("timeout()", self.onInteractivePoll)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()
        self.timer.stop()
        self.interactiveTimer.stop()
        self.pipeTimer.stop()
        if self.interactive is not None:
            self.interactive.close()
        if self.logic is not None:
            self.logic.close(wait=False)  # never hold Slicer's exit: a thread reaps the worker

    def enter(self):
        restore_interpolation(slicer.mrmlScene)  # for a scene loaded before this widget existed
        start_driver_query()  # for the installation dialog, should it be needed: answered by then
        self.initializeParameterNode()
        if self.logic.warmUp(self.ui.workerPythonLineEdit.currentPath):
            self.pipeTimer.start()

    def onPipeTick(self):
        if self.logic.workerAlive:
            let_readers_run()
        else:  # no worker, nothing to read; Register and Start start the tick again
            self.pipeTimer.stop()

    def onSceneStartClose(self, caller, event):
        if self.interactive is not None and self.interactive.active:  # its nodes belong to the closing scene
            self.interactive.close()
            self.interactiveTimer.stop()
            self.interactive.refresh()
        if self.logic is not None and self.logic.running:  # its result belongs to the scene that is closing
            self.logic.abandon()
            self.timer.stop()
            self.ui.stageLabel.text = "cancelled: the scene was closed"
        self.setParameterNode(None)

    def onNodeAdded(self, caller, event):
        """A volume loaded after the panel opened: fill an empty fixed or moving volume, and give the moving role to
        another volume when both selectors took the first one (an empty qMRMLNodeComboBox selects the first node
        that arrives)."""
        if self.parameterNode is None or self._updating:
            return
        fixed, moving = get_node(self.parameterNode, "fixedVolume"), get_node(self.parameterNode, "movingVolume")
        if fixed is None or moving is None or fixed is moving:
            wasModifying = self.parameterNode.StartModify()
            preselect_volumes(slicer.mrmlScene, self.parameterNode)
            self.parameterNode.EndModify(wasModifying)

    def onInteractiveStart(self):
        settings = self.logic.machineSettings()
        if not settings.worker_command and self.logic.knownUnmetRequirements(settings.worker_python) is None:
            try:
                self.firstUse.ask(settings.worker_python, self.onInteractiveStart)
                self.updateGUIFromParameterNode()
            except ValueError as error:
                slicer.util.errorDisplay(f"The interactive session could not start: {error}")
            return
        self.interactive.start()
        if self.interactive.active:
            self.interactiveTimer.start()
            self.pipeTimer.start()

    def onInteractivePoll(self):
        let_readers_run()
        self.interactive.poll()
        if not self.interactive.active:  # the session ended (its worker died): nothing left to poll
            self.interactiveTimer.stop()

    def onSceneEndImport(self, caller, event):
        restore_interpolation(slicer.mrmlScene)  # our grid transforms interpolate like the engine again
        if self.parent.isEntered:
            self.initializeParameterNode()  # show the loaded scene's settings

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node <-> GUI --------------------------------------------------------------------------
    def initializeParameterNode(self):
        node = find_or_create_parameter_node(slicer.mrmlScene)
        preselect_volumes(slicer.mrmlScene, node)
        self.setParameterNode(node)

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
        self._updating = True
        try:
            values = read_parameters(self.parameterNode)
            for name, role in self.SELECTORS.items():
                node = get_node(self.parameterNode, role)
                if getattr(self.ui, name).currentNode() is not node:
                    getattr(self.ui, name).setCurrentNode(node)
            for name, field in self.CHECK_BOXES.items():
                _setIfDifferent(getattr(self.ui, name), "checked", getattr(values, field))
            _setIfDifferent(self.ui.textLineEdit, "text", values.text)
            _setIfDifferent(self.ui.modelComboBox, "currentText", values.model)
            _setIfDifferent(self.ui.deviceComboBox, "currentText", values.device)
            _setIfDifferent(self.ui.presetComboBox, "currentText", values.preset)
            self.ui.presetComboBox.toolTip = PRESET_HELP.get(values.preset, "")
            for name, field in self.SPIN_BOXES.items():
                _setIfDifferent(getattr(self.ui, name), "value", getattr(values, field))
            self.results.refresh(values.last_summary)
            fixed, moving = self.ui.fixedVolumeSelector.currentNode(), self.ui.movingVolumeSelector.currentNode()
            chosen = fixed is not None and moving is not None
            ready = chosen and fixed is not moving
            running = self.logic is not None and self.logic.busy
            self.ui.registerButton.enabled = ready and not running
            self.ui.registerButton.toolTip = (
                "Choose a fixed and a moving volume" if not chosen else
                "The fixed and the moving volume are the same: choose two different volumes" if not ready else
                "Register the images, refined by the prompts ticked" if values.has_method else
                "Register the images alone (no prompt ticked); tick Points, Text or Automatic to refine")
            self.ui.cancelButton.enabled = running
        finally:
            self._updating = False

    def updateParameterNodeFromGUI(self, *args):
        if self.parameterNode is None or self._updating:
            return
        self._updating = True
        try:
            values = read_parameters(self.parameterNode)
            for name, field in self.CHECK_BOXES.items():
                setattr(values, field, getattr(self.ui, name).checked)
            values.text = self.ui.textLineEdit.text
            values.model = self.ui.modelComboBox.currentText
            values.device = self.ui.deviceComboBox.currentText
            for name, field in self.SPIN_BOXES.items():
                setattr(values, field, type(getattr(values, field))(getattr(self.ui, name).value))
            values.choose_preset(self.ui.presetComboBox.currentText)  # after the spin boxes: it sets the spacing
            wasModifying = self.parameterNode.StartModify()
            write_parameters(self.parameterNode, values)  # no method ticked is stored too; Register says so
            for name, role in self.SELECTORS.items():
                set_node(self.parameterNode, role, getattr(self.ui, name).currentNode())
            self.parameterNode.EndModify(wasModifying)
        finally:
            self._updating = False
        self.updateGUIFromParameterNode()

    def onMachineSettingsChanged(self, *args):
        self.logic.saveMachineSettings(MachineSettings(worker_python=self.ui.workerPythonLineEdit.currentPath,
                                                       checkpoint=self.ui.checkpointLineEdit.currentPath,
                                                       worker_command=self.ui.workerCommandLineEdit.text))

    # -- actions ----------------------------------------------------------------------------------------
    def onRegister(self):
        values = read_parameters(self.parameterNode)
        settings = self.logic.machineSettings()
        try:
            values.validate()
            if not self.confirmPrealignment():
                return
            if self.firstUse.offer_install(settings, then=self.onRegister):
                self.updateGUIFromParameterNode()
                return  # the registration starts when the probe or the installation has finished (onPoll)
            self.logic.start(self.parameterNode, values, settings)
        except (ValueError, RuntimeError, TransformChainError) as error:  # shown to the user, never a traceback
            slicer.util.errorDisplay(f"Registration could not start: {error}")
            return
        self.ui.progressBar.value = 0
        self.ui.stageLabel.text = "starting the worker..."
        self.timer.start()
        self.pipeTimer.start()
        self.updateGUIFromParameterNode()

    def confirmPrealignment(self) -> bool:
        """Offer to keep the user's own transform of the moving volume as the pre-alignment (False: do not start)."""
        moving = get_node(self.parameterNode, "movingVolume")
        chain = user_chain(moving) if moving is not None else []
        if not chain:
            return True
        names = " > ".join(transform.GetName() for transform in chain)
        return slicer.util.confirmOkCancelDisplay(
            f"The moving volume is under your transform '{names}'.\n\nRegister starting from it? It stays as it is; "
            "the result is placed above it. (Cancel, then remove or harden it, to register the volume as stored.)")

    def onPoll(self):
        let_readers_run()
        if self.firstUse.poll():
            self.updateGUIFromParameterNode()
            return
        for event in self.logic.poll():
            kind = event.get("type")
            if kind == "progress":
                self.ui.stageLabel.text = event.get("stage", "")
                self.ui.progressBar.value = int(100 * float(event.get("fraction", 0.0)))
            elif kind == "error":
                self.timer.stop()
                cancelled = event.get("code") == "cancelled"
                self.ui.stageLabel.text = "cancelled" if cancelled else "failed"
                if not cancelled:
                    slicer.util.errorDisplay(event.get("message", "registration failed"))
            elif kind == "result":
                self.timer.stop()
                try:
                    self.logic.finish(self.parameterNode, event)
                except Exception as error:  # a result that cannot be loaded is reported, never raised in a slot
                    slicer.util.errorDisplay(f"The result could not be loaded: {error}")
                    self.ui.stageLabel.text = "failed"
                else:
                    self.ui.stageLabel.text = "done"
                    self.ui.progressBar.value = 100
        self.updateGUIFromParameterNode()

    def onCancel(self):
        if self.logic.cancel():
            self.ui.stageLabel.text = "cancelling..."

# -- Logic ------------------------------------------------------------------------------------------
class PromptRegisterLogic(ScriptedLoadableModuleLogic, ModuleLogic):
    """The Logic on Slicer's base class, keeping machine paths in QSettings (PromptRegisterLib.module_logic)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        ModuleLogic.__init__(self, settingsStore=qt.QSettings())


# -- Test ------------------------------------------------------------------------------------------------
class PromptRegisterTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: a sample volume registered to a shifted copy of itself with the classical backend."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        missing = PromptRegisterLogic.unmetRequirements()
        if missing:  # a stock Slicer before the first-use installation
            self.delayDisplay("PromptRegister self-test skipped: Slicer's Python lacks "
                              + ", ".join(missing) + ". Open the module and press Register once to install them.")
            return
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
