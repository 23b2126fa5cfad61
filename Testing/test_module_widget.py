"""The panel (PromptRegisterWidget) driven as a user drives it: typing, ticking, closing the scene mid-run.

The widgets come from the real .ui file and the scene is a real vtkMRMLScene with a real worker; the Qt
widgets and the application are the FAKE stand-ins of slicer_standins.py (no Slicer application can run here).
"""

from __future__ import annotations

import time

import numpy as np

import slicer

from mrml_helpers import clicks_on_labels


def test_typing_is_never_overwritten_by_the_parameter_node(widget):
    ui = widget.ui
    ui.useTextCheckBox.user_sets("checked", True, "toggled(bool)")
    for partial in ("p", "pr", "pros"):
        ui.textLineEdit.user_sets("text", partial, "textChanged(QString)")
    assert ui.textLineEdit.sets["text"] == 0, "the panel wrote into the text box while the user typed"
    assert widget.parameterNode.GetParameter("text") == "pros"
    # a double spin box half-way through "2." holds 2.0: the panel must not set (and so reformat) it
    spin = ui.gridSpacingSpinBox
    spin.user_sets("value", 2.0, "valueChanged(double)")
    assert spin.sets["value"] == 0 and widget.parameterNode.GetParameter("grid_spacing_mm") == "2.0"
    # a change made elsewhere (the Python console, a loaded scene) does reach the widget
    widget.parameterNode.SetParameter("text", "bladder")
    assert ui.textLineEdit.text == "bladder" and ui.textLineEdit.sets["text"] == 1


def test_unticking_every_method_stays_unticked_and_register_then_registers_the_images(widget, dialogs, hippocampus):
    from PromptRegisterLib.mrml import node_from_volume

    ui = widget.ui
    for name in ("useTextCheckBox", "useAutoCheckBox"):
        getattr(ui, name).user_sets("checked", False, "toggled(bool)")
    ui.usePointsCheckBox.user_sets("checked", False, "toggled(bool)")
    assert not ui.usePointsCheckBox.checked, "the last method was ticked again behind the user's back"
    assert widget.parameterNode.GetParameter("use_points") == "False"
    assert not ui.registerButton.enabled and "volume" in ui.registerButton.toolTip  # no volumes yet
    node_from_volume(slicer.mrmlScene, hippocampus("001")[0], "case001")
    node_from_volume(slicer.mrmlScene, hippocampus("004")[0], "case004")
    widget.initializeParameterNode()  # preselects the two volumes
    assert ui.registerButton.enabled and "images alone" in ui.registerButton.toolTip
    ui.presetComboBox.user_sets("currentText", "paper", "currentIndexChanged(int)")
    ui.registerButton.emit("clicked(bool)", False)  # the paper preset fits region pairs alone: it needs a prompt
    assert dialogs.errors and "needs a prompt" in dialogs.errors[-1]


def test_machine_paths_go_to_the_application_settings_not_the_scene(widget):
    ui = widget.ui
    ui.workerPythonLineEdit.user_sets("currentPath", "/opt/envs/cuda/bin/python", "currentPathChanged(QString)")
    settings = widget.logic.machineSettings()
    assert settings.worker_python == "/opt/envs/cuda/bin/python"
    assert not widget.parameterNode.HasParameter("worker_python")
    assert "/opt/envs" not in "".join(widget.parameterNode.GetParameter(n) for n in
                                      widget.parameterNode.GetParameterNames())
    ui.workerPythonLineEdit.user_sets("currentPath", "", "currentPathChanged(QString)")


def _inputs_and_register(widget, hippocampus) -> None:
    from PromptRegisterLib.mrml import node_from_volume

    scene = slicer.mrmlScene
    fixed, _ = hippocampus("001")
    moving, moving_labels = hippocampus("004")
    node_from_volume(scene, fixed, "case001")
    node_from_volume(scene, moving, "case004")
    widget.initializeParameterNode()  # preselects the two volumes
    widget.ui.pointsSelector.setCurrentNode(clicks_on_labels(scene, moving_labels, 2, 1))
    widget.ui.modelComboBox.user_sets("currentText", "classical", "currentIndexChanged(int)")
    widget.ui.marginalSpinBox.user_sets("value", 0, "valueChanged(int)")
    widget.ui.registerButton.emit("clicked(bool)", False)


def test_closing_the_scene_during_a_run_cancels_it_and_adds_nothing(widget, dialogs, hippocampus):
    scene = slicer.mrmlScene
    _inputs_and_register(widget, hippocampus)
    assert dialogs.errors == [] and widget.logic.running and widget.timer.isActive()
    scene.Clear(0)  # File > Close Scene
    assert not widget.logic.running and not widget.timer.isActive()
    assert "closed" in widget.ui.stageLabel.text
    for _ in range(10):  # timer ticks that were already queued must neither raise nor add anything
        widget.onPoll()
        time.sleep(0.2)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
    assert scene.GetNumberOfNodesByClass("vtkMRMLGridTransformNode") == 0
    # the new scene works: its parameter node is in it, and the worker (not left busy) registers again
    assert widget.parameterNode is not None and scene.IsNodePresent(widget.parameterNode)
    _inputs_and_register(widget, hippocampus)
    deadline = time.monotonic() + 300
    while widget.timer.isActive() and time.monotonic() < deadline:
        widget.onPoll()
        time.sleep(0.2)
    assert dialogs.errors == [] and widget.ui.stageLabel.text == "done"
    assert scene.GetNumberOfNodesByClass("vtkMRMLGridTransformNode") == 1
    assert widget.ui.resultsTable.rowCount >= 1


def test_entering_the_module_starts_the_worker_without_waiting_for_it(widget):
    widget.logic.close()
    started = time.monotonic()
    widget.enter()
    assert time.monotonic() - started < 2.0, "entering the module waited for the worker"
    client = widget.logic._registration.client
    assert client is not None and client.alive
    assert client.hello["protocol"] >= 1  # and it does come up


def test_the_self_test_skips_with_its_reason_when_packages_are_missing(widget, dialogs, monkeypatch):
    import PromptRegister
    from PromptRegisterLib import dependencies

    monkeypatch.setattr(dependencies, "REQUIREMENTS", dependencies.REQUIREMENTS + ("no-such-package>=1",))
    PromptRegister.PromptRegisterTest().runTest()
    assert "skipped" in dialogs.confirmations[-1] and "no-such-package>=1" in dialogs.confirmations[-1]


def _poll_until_answered(widget, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while widget.interactive.loop.pending and time.monotonic() < deadline:
        widget.interactive.poll()
        time.sleep(0.1)
    widget.interactive.poll()
    assert not widget.interactive.loop.pending, "the worker did not answer in time"


def test_the_interactive_section_turns_placed_points_into_pairs_and_a_transform(widget, dialogs, hippocampus):
    from PromptRegisterLib.mrml import lps_to_ras, node_from_volume

    scene = slicer.mrmlScene
    fixed, fixed_labels = hippocampus("001")
    moving, moving_labels = hippocampus("004")
    node_from_volume(scene, fixed, "case001")
    moving_node = node_from_volume(scene, moving, "case004")
    widget.initializeParameterNode()
    ui = widget.ui
    ui.modelComboBox.user_sets("currentText", "classical", "currentIndexChanged(int)")
    ui.marginalSpinBox.user_sets("value", 0, "valueChanged(int)")
    assert not ui.updateTransformButton.enabled  # nothing to act on before Start
    ui.interactiveStartButton.emit("clicked(bool)", False)
    assert dialogs.errors == [] and widget.interactiveTimer.isActive() and ui.updateTransformButton.enabled
    assert widget.interactiveTimer.interval == 100, "clicked(bool) reached QTimer.start: a 0 ms timer"
    clicks = ui.clicksPlaceWidget.currentNode()
    rng_points = clicks_on_labels(scene, moving_labels, 1, 4)  # two points a user would click (one per label)
    for index in range(rng_points.GetNumberOfControlPoints()):
        ras = [0.0, 0.0, 0.0]
        rng_points.GetNthControlPointPositionWorld(index, ras)
        clicks.AddControlPointWorld(*ras)  # placing a point: the panel sends it at once
    _poll_until_answered(widget)
    assert ui.pairComboBox.items == ["p1", "p2"] and ui.interactiveStatusLabel.text.startswith("2 pairs")
    assert ui.pairsTableView.node.GetNumberOfRows() == 2

    ui.autoUpdateCheckBox.user_sets("checked", True, "toggled(bool)")
    ui.pairComboBox.currentText = "p2"
    ui.deletePairButton.emit("clicked(bool)", False)
    _poll_until_answered(widget)  # the deletion, then the fit it triggers
    _poll_until_answered(widget)
    transform = widget.interactive.loop.nodes["transform"]
    assert moving_node.GetParentTransformNode() is transform and ui.pairComboBox.items == ["p1"]
    assert "last fit" in ui.interactiveStatusLabel.text

    ui.pairComboBox.currentText = "p1"
    corrections = ui.correctionPlaceWidget.currentNode()
    voxel = np.argwhere(fixed_labels.array == 1)[0]
    corrections.AddControlPointWorld(*lps_to_ras(fixed_labels.geometry.index_to_physical(voxel[::-1].astype(float))))
    _poll_until_answered(widget)
    _poll_until_answered(widget)
    assert widget.interactive.loop.pairs["p1"]["corrected"]
    assert widget.interactive.loop.nodes["transform"] is transform  # updated in place after the correction
    assert dialogs.errors == []

    # the place widget's Delete removes a point: the next points are numbered below the count placed so far, and
    # each must still reach the worker
    placed = len(widget.interactive.loop.pairs)
    clicks.RemoveNthControlPoint(0)
    for index in range(rng_points.GetNumberOfControlPoints()):
        ras = [0.0, 0.0, 0.0]
        rng_points.GetNthControlPointPositionWorld(index, ras)
        clicks.AddControlPointWorld(*ras)
    _poll_until_answered(widget)
    _poll_until_answered(widget)
    assert len(widget.interactive.loop.pairs) == placed + 2, "a point placed after a deletion was not sent"
    assert dialogs.errors == []

    scene.Clear(0)  # closing the scene ends the session
    assert not widget.interactive.active and not widget.interactiveTimer.isActive()
