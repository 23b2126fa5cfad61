"""The panel under the rules real Slicer imposes and lenient stand-ins used to hide: PythonQt's signal delivery,
qMRMLNodeComboBox's selection of the first node, Sample Data's signature on 5.6 and on 5.8+.

The stand-ins (slicer_standins.py, slicer_standin_app.py) name the Slicer, PythonQt or Qt source each imitates.
"""

from __future__ import annotations

import types

import numpy as np
import vtk
import pytest

import slicer

from slicer_standin_app import install_sample_data
from slicer_standins import loaded_module


def _volume(name: str, labels: bool = False):
    from PromptRegisterLib.mrml import node_from_volume
    from promptregister.geometry import Geometry
    from promptregister.volume import Volume

    array = np.zeros((4, 5, 6), np.uint8 if labels else np.float32)
    node = node_from_volume(slicer.mrmlScene, Volume(array, Geometry.create((6, 5, 4))), name)
    if labels:  # a label map in the scene, as Slicer loads one: a vtkMRMLLabelMapVolumeNode
        label_map = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name + " labels")
        label_map.SetAndObserveImageData(node.GetImageData())
        slicer.mrmlScene.RemoveNode(node)
        return label_map
    return node


@pytest.mark.parametrize("version", ["5.6", "5.8"])
def test_the_sample_pair_is_registered_at_startup_with_the_keyword_every_slicer_takes(dialogs, version):
    """Slicer 5.6's registerCustomSampleDataSource has loadFileType only; 5.8+ keep it as an alias."""
    with loaded_module(slicer, dialogs) as module:
        sample_data = install_sample_data(version)
        module.PromptRegister(types.SimpleNamespace())  # Slicer builds the module class during startup
        slicer.app.emit("startupCompleted()")
        assert len(sample_data.sources) == 1
        source = sample_data.sources[0]
        assert source["category"] == "PromptRegister" and len(source["uris"]) == 4
        assert source["loadFileTypes"] == ["VolumeFile", "SegmentationFile"] * 2


def test_two_volumes_loaded_after_the_panel_opened_become_fixed_and_moving(widget):
    ui = widget.ui
    fixed = _volume("first")
    assert ui.fixedVolumeSelector.currentNode() is fixed  # an empty combo box selects the first node itself
    assert not ui.registerButton.enabled
    moving = _volume("second")
    assert ui.fixedVolumeSelector.currentNode() is fixed and ui.movingVolumeSelector.currentNode() is moving
    assert widget.parameterNode.GetNodeReference("movingVolume") is moving
    assert ui.registerButton.enabled
    _volume("third")  # a later volume changes nothing the user chose
    assert ui.movingVolumeSelector.currentNode() is moving


def test_label_maps_are_not_offered_as_fixed_or_moving(widget):
    label_map = _volume("segmentation", labels=True)
    assert label_map not in widget.ui.fixedVolumeSelector.nodes()
    assert widget.ui.fixedVolumeSelector.currentNode() is None


def test_the_same_volume_as_fixed_and_moving_is_refused_with_a_message(widget, dialogs):
    ui = widget.ui
    fixed, other = _volume("first"), _volume("second")
    ui.movingVolumeSelector.setCurrentNode(fixed)  # the user picks the fixed volume as moving too
    assert widget.parameterNode.GetNodeReference("movingVolume") is fixed
    assert not ui.registerButton.enabled and "same" in ui.registerButton.toolTip
    widget.onRegister()  # from the console, or a stale button
    assert dialogs.errors and "same volume" in dialogs.errors[-1]
    assert not widget.logic.running
    widget.onInteractiveStart()
    assert "same volume" in dialogs.errors[-1] and not widget.interactive.active
    ui.movingVolumeSelector.setCurrentNode(other)
    assert ui.registerButton.enabled


def test_start_without_a_session_leaves_the_poll_timer_off(widget, dialogs):
    """Start connected straight to QTimer.start would receive clicked's False: start(0), a 0 ms timer, and
    running even when no session opened."""
    widget.ui.interactiveStartButton.emit("clicked(bool)", False)
    assert dialogs.errors and not widget.interactive.active
    assert not widget.interactiveTimer.isActive()


SLICER_5_6 = {"numpy": "1.26.4", "scipy": "1.11.4", "SimpleITK": "2.2.1", "vtk": "9.2.20230607"}
"""What Slicer 5.6 ships (SuperBuild/External_*.cmake at v5.6.2)."""


def test_slicer_5_6s_own_packages_meet_the_requirements_and_are_never_reinstalled(tmp_path):
    """The real probe (dependencies.py run as a script, as for a worker Python) on an interpreter whose installed
    distributions are Slicer 5.6's: none of them is reported missing. And were one ever older than needed, Slicer's
    Python is not offered a pip install over it."""
    import json
    import subprocess
    import sys

    from PromptRegisterLib import dependencies

    site = tmp_path / "site"
    for name, version in SLICER_5_6.items():
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    probe = (f"import sys, runpy; sys.path[:0] = [{str(site)!r}]; sys.argv = ['dependencies.py', '--json'] + "
             f"{[r for r in dependencies.REQUIREMENTS if dependencies.split_requirement(r)[0] in SLICER_5_6]!r}; "
             f"runpy.run_path({dependencies.__file__!r}, run_name='__main__')")
    completed = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {}
    older = {"numpy>=1.24": "1.22.4", "torch>=2.1": None}
    commands = dependencies.install_commands("PythonSlicer", list(older), keep=dependencies.SHIPPED_WITH_SLICER)
    assert commands and not any("numpy" in part for command in commands for part in command)


def test_an_older_package_slicer_ships_is_named_not_installed_over(widget):
    with pytest.raises(ValueError, match="numpy>=1.24.*never replaced"):
        widget.logic.installMessage({"numpy>=1.24": "1.22.4"}, "")
    assert "numpy" in widget.logic.installMessage({"numpy>=1.24": "1.22.4"}, "/opt/venv/bin/python")


def test_a_worker_started_by_a_command_asks_this_slicer_for_no_installation(widget, dialogs, monkeypatch):
    """A stock Slicer (no torch) with an SSH worker: Register runs on the worker, no install offer."""
    import sys

    from PromptRegisterLib.settings import MachineSettings

    _volume("first"), _volume("second")
    widget.logic.saveMachineSettings(MachineSettings(worker_command=f"{sys.executable} -m promptregister.worker"))
    monkeypatch.setattr(widget.logic, "unmetRequirements", lambda python="": {"torch>=2.1": None})
    widget.ui.registerButton.emit("clicked(bool)", False)
    assert dialogs.confirmations == [] and dialogs.errors == []
    assert widget.logic.running and not widget.logic.installing
    widget.logic.cancel()


def test_a_worker_that_dies_during_an_interactive_fit_is_reported_and_start_works_again(widget, dialogs, hippocampus):
    import time

    from PromptRegisterLib.mrml import node_from_volume

    from mrml_helpers import clicks_on_labels

    scene = slicer.mrmlScene
    node_from_volume(scene, hippocampus("001")[0], "case001")
    moving, moving_labels = hippocampus("004")
    node_from_volume(scene, moving, "case004")
    ui = widget.ui
    ui.modelComboBox.user_sets("currentText", "classical", "currentIndexChanged(int)")
    ui.marginalSpinBox.user_sets("value", 0, "valueChanged(int)")
    ui.interactiveStartButton.emit("clicked(bool)", False)
    assert dialogs.errors == [] and widget.interactive.active
    ras = [0.0, 0.0, 0.0]
    clicks_on_labels(scene, moving_labels, 1, 1).GetNthControlPointPositionWorld(0, ras)
    ui.clicksPlaceWidget.currentNode().AddControlPointWorld(*ras)
    ui.updateTransformButton.emit("clicked(bool)", False)  # a fit is asked for
    loop = widget.interactive.loop
    assert any(kind == "fit" for kind, _ in loop.pending.values())
    worker = loop.client
    worker.process.kill()  # the worker dies during the fit (out of memory, a crash)
    deadline = time.monotonic() + 60
    while widget.interactive.active and time.monotonic() < deadline:
        for slot in widget.interactiveTimer.slots:
            slot()  # the timer's timeout()
        time.sleep(0.05)
    assert not widget.interactive.active, "the death of the worker was never noticed"
    assert dialogs.errors and "worker stopped" in dialogs.errors[-1] and "Start" in dialogs.errors[-1]
    assert not widget.interactiveTimer.isActive()
    assert worker.process.poll() is not None and not worker.alive  # not restarted behind the user's back
    errors = len(dialogs.errors)
    ui.interactiveStartButton.emit("clicked(bool)", False)  # Start works again, on a new worker
    assert len(dialogs.errors) == errors and widget.interactive.active and widget.interactiveTimer.isActive()
    assert widget.interactive.loop.client.alive  # the worker was started again, for the new session


def _result_on(widget, moving):
    """A result as finish() leaves it: a module grid transform above the moving volume, named in the parameter
    node."""
    from PromptRegisterLib.parameters import set_node
    from PromptRegisterLib.transforms import attach, mark_module_transform

    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "PromptRegister result")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 5.0)
    transform.SetMatrixTransformToParent(matrix)
    mark_module_transform(transform)
    attach(moving, transform)
    set_node(widget.parameterNode, "outputTransform", transform)
    return transform


def test_after_harden_the_result_cannot_be_applied_a_second_time(widget):
    ui = widget.ui
    _volume("first")
    moving = _volume("second")
    transform = _result_on(widget, moving)
    assert ui.applyTransformButton.checked and ui.applyTransformButton.enabled
    ui.applyTransformButton.user_sets("checked", False, "toggled(bool)")
    assert moving.GetParentTransformNode() is None
    ui.applyTransformButton.user_sets("checked", True, "toggled(bool)")
    assert moving.GetParentTransformNode() is transform
    ui.hardenTransformButton.emit("clicked(bool)", False)
    assert moving.GetParentTransformNode() is None  # the shift is in the voxels now
    assert not ui.applyTransformButton.checked, "the toggle says the result is applied after Harden"
    assert not ui.applyTransformButton.enabled
    ui.applyTransformButton.emit("toggled(bool)", True)  # a click that reaches it anyway
    assert moving.GetParentTransformNode() is None, "the result was applied on top of its hardened self"
    assert slicer.mrmlScene.IsNodePresent(transform)  # the transform itself stays for the user


def test_the_results_table_is_rebuilt_only_for_a_new_result_and_cleared_with_the_scene(widget):
    from PromptRegisterLib.parameters import read_parameters, write_parameters

    ui = widget.ui
    values = read_parameters(widget.parameterNode)
    values.last_summary = {"pairs": [{"name": "p1", "source": {"method": "promptreg"}, "score": 0.8,
                                      "dice_after": 0.9}], "mean_dice_after": 0.9, "jacobian": {}}
    write_parameters(widget.parameterNode, values)
    assert ui.resultsTable.rowCount == 1 and "1 region pairs" in ui.summaryLabel.text
    items = ui.resultsTable.sets["item"]
    for _ in range(5):  # the 200 ms poll during a later run
        widget.updateGUIFromParameterNode()
    assert ui.resultsTable.sets["item"] == items, "the table was rebuilt (selection and scroll lost) on each poll"
    slicer.mrmlScene.Clear(0)  # File > Close Scene
    assert ui.resultsTable.rowCount == 0 and ui.summaryLabel.text == ""


def test_a_cancelled_installation_is_said_to_be_cancelled_not_failed(widget, dialogs):
    import sys
    import time

    from PromptRegisterLib.installer import BackgroundInstall

    widget.logic.install = BackgroundInstall([[sys.executable, "-c", "print('downloading'); import time; "
                                               "time.sleep(60)"]])
    widget.timer.start()
    deadline = time.monotonic() + 30
    while "downloading" not in widget.logic.install.output and time.monotonic() < deadline:
        time.sleep(0.05)
    widget.onCancel()
    assert widget.logic.install.wait(30) is not None
    widget.onPoll()
    assert dialogs.errors == [], "a cancelled installation was reported as failed"
    assert "cancelled" in widget.ui.stageLabel.text and not widget.logic.installing
    assert not widget.timer.isActive()


def _slicer_idle(seconds: float) -> None:
    """Slicer's event loop between two timer ticks: C++ code that keeps the GIL (Slicer never enables PythonQt's
    thread support). A call through ctypes.PyDLL keeps the GIL too, so Python threads wait as they do in Slicer."""
    import ctypes

    ctypes.PyDLL(None).usleep(int(seconds * 1e6))


def test_the_worker_is_read_while_slicer_idles_so_it_never_blocks_on_a_full_pipe(widget):
    """600 answers (about 170 KB) fill the worker's stdout pipe; the worker answers the next request only once
    they have been read. In Slicer the reader threads get the GIL only when Python runs on the main thread, so a
    tick must run while a worker is alive, not only during a registration; here the main thread holds the GIL
    between ticks, as Slicer's idle event loop does."""
    import time

    assert widget.pipeTimer.isActive(), "a worker started on enter but no tick reads its pipes"
    client = widget.logic.registration("").client
    client.hello  # the worker is up  # noqa: B018
    for number in range(600):
        client.send_raw(f'{{"id": "flood-{number}", "type": "no_such_request_type_{number:04d}"}}')
    last = client.send("hello")

    deadline, answer = time.monotonic() + 20, []
    while not answer and time.monotonic() < deadline:
        _slicer_idle(0.1)
        assert widget.pipeTimer.isActive(), "the tick stopped while the worker is alive"
        widget.onPipeTick()  # the timer's timeout()
        answer = client.poll(last)
    assert answer and answer[-1]["type"] == "result", "the worker's answers were not read while Slicer idled"
    widget.logic.close()
    widget.onPipeTick()
    assert not widget.pipeTimer.isActive(), "the tick goes on with no worker"


def test_register_asks_a_separate_worker_python_for_its_packages_without_waiting_for_it(widget, dialogs, tmp_path):
    """The probe runs another interpreter (up to a minute on a cold disk): the click returns at once, the timer
    polls the probe, and the registration starts when it has answered."""
    import os
    import sys
    import time

    from PromptRegisterLib.settings import MachineSettings

    slow_python = tmp_path / "python"
    slow_python.write_text(f'#!/bin/sh\nsleep 1\nexec "{sys.executable}" "$@"\n')
    os.chmod(slow_python, 0o755)
    _volume("first"), _volume("second")
    widget.logic.saveMachineSettings(MachineSettings(worker_python=str(slow_python)))
    widget.ui.registerButton.emit("clicked(bool)", False)
    assert widget.logic.probe is not None and not widget.logic.running, "the click waited for the probe"
    assert "asking the worker" in widget.ui.stageLabel.text and widget.timer.isActive()
    assert not widget.ui.registerButton.enabled  # busy: a second click would start a second probe
    deadline = time.monotonic() + 60
    while widget.logic.probe is not None and time.monotonic() < deadline:
        widget.onPoll()
        time.sleep(0.05)
    assert dialogs.errors == [] and dialogs.confirmations == []  # it has every package: nothing to offer
    assert widget.logic.running, "the registration did not go on after the probe answered"
    widget.logic.cancel()
    assert widget.logic.knownUnmetRequirements(str(slow_python)) == {}  # asked once, remembered


def test_the_install_dialog_names_the_gpu_without_waiting_for_nvidia_smi(tmp_path, monkeypatch):
    import os
    import sys

    from PromptRegisterLib import dependencies

    fake = tmp_path / "nvidia-smi"  # a driver that answers after 2 s
    fake.write_text(f"#!{sys.executable}\nimport time; time.sleep(2); print('Quadro Test, 550.1')\n")
    os.chmod(fake, 0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(dependencies, "_driver", {"query": None, "answer": None})
    monkeypatch.setattr(dependencies.sys, "platform", "linux")
    dependencies.start_driver_query()  # when the panel opens
    assert "NVIDIA" in dependencies.torch_build_description()  # at once, while it runs
    dependencies._driver["query"].wait(30)
    assert "Quadro Test, 550.1" in dependencies.torch_build_description()
