"""PromptRegister.py's Logic, the code behind the Register, Cancel, Show ROIs and Apply buttons, run with a real
MRML scene from the slicer-core wheel and a real worker subprocess.

The Slicer application cannot exist here, so what only it provides (its Qt bindings, the scripted-module base
classes, slicer.app and the GUI helpers of slicer.util) is stood in by the FAKES of slicer_standins.py.
`slicer.mrmlScene` is a real `vtkMRMLScene`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import slicer

MODULE_DIR = Path(__file__).resolve().parents[1] / "PromptRegister"
sys.path.insert(0, str(MODULE_DIR))

from mrml_helpers import clicks_on_labels, wait_for_end  # noqa: E402
from slicer_standins import Dialogs, loaded_module  # noqa: E402
from PromptRegisterLib.mrml import node_from_volume  # noqa: E402
from PromptRegisterLib.parameters import (Parameters, find_or_create_parameter_node, get_node,  # noqa: E402
                                          read_parameters, set_node)


@pytest.fixture(scope="module")
def dialogs():
    return Dialogs()


@pytest.fixture(scope="module")
def module(dialogs):
    with loaded_module(slicer, dialogs) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def scene_with_inputs(module, hippocampus):
    """Fixed and moving volumes and two clicks per label on the moving hippocampus, referenced by the module's
    parameter node."""
    scene = slicer.mrmlScene
    fixed, _ = hippocampus("001")
    moving, moving_labels = hippocampus("004")
    parameter_node = find_or_create_parameter_node(scene)
    set_node(parameter_node, "fixedVolume", node_from_volume(scene, fixed, "case001"))
    set_node(parameter_node, "movingVolume", node_from_volume(scene, moving, "case004"))
    set_node(parameter_node, "pointPrompts", clicks_on_labels(scene, moving_labels, 2, 1))
    return parameter_node


def test_start_refuses_incomplete_settings_with_a_message(module, scene_with_inputs):
    logic = module.PromptRegisterLogic()
    parameter_node = scene_with_inputs
    empty = find_or_create_parameter_node(slicer.vtkMRMLScene())
    with pytest.raises(ValueError, match="choose a fixed and a moving volume"):
        logic.start(empty, Parameters())
    with pytest.raises(ValueError, match="paper preset fits region pairs alone, so it needs a prompt"):
        logic.start(parameter_node, Parameters(use_points=False, preset="paper"))
    with pytest.raises(ValueError, match="type a text prompt, or untick Text"):
        logic.start(parameter_node, Parameters(use_points=False, use_text=True, text=" , "))
    with pytest.raises(ValueError, match="model must be one of"):
        logic.start(parameter_node, Parameters(model="sam3"))
    markups = get_node(parameter_node, "pointPrompts")
    set_node(parameter_node, "pointPrompts", None)
    try:
        with pytest.raises(ValueError, match="place points on the moving volume"):
            logic.start(parameter_node, Parameters(preset="paper"))
    finally:
        set_node(parameter_node, "pointPrompts", markups)
    too_many = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "fixed points")
    for _ in range(markups.GetNumberOfControlPoints() + 1):
        too_many.AddControlPoint(0.0, 0.0, 0.0)
    set_node(parameter_node, "fixedPointPrompts", too_many)
    try:
        with pytest.raises(ValueError, match="counterpart of the moving point of the same number"):
            logic.start(parameter_node, Parameters())
    finally:
        set_node(parameter_node, "fixedPointPrompts", None)
    assert not logic.running


def test_unmet_requirements_are_named_by_their_pip_requirement(module, monkeypatch):
    from PromptRegisterLib import dependencies

    monkeypatch.setattr(dependencies, "REQUIREMENTS", dependencies.REQUIREMENTS + ("no-such-package>=1",))
    assert module.PromptRegisterLogic().unmetRequirements() == {"no-such-package>=1": None}


def test_register_button_flow_fills_the_parameter_node_and_the_views(module, scene_with_inputs):
    """start -> poll (as the Widget's timer) -> finish, then the Show ROIs / Apply / Harden actions."""
    logic = module.PromptRegisterLogic()
    parameter_node = scene_with_inputs
    values = read_parameters(parameter_node)
    values.model, values.device, values.marginal_samples = "classical", "cpu", 0
    try:
        logic.start(parameter_node, values)
        assert logic.running
        events = wait_for_end(logic)
        assert not logic.running
        result = events[-1]
        assert result["type"] == "result", result
        stages = [event["stage"] for event in events if event["type"] == "progress"]
        # the images first (the image registration every prompt refines), then the clicks, then the fit
        assert stages[0] == "images: linear start" and stages[-1] == "write" and "embed moving" in stages
        assert any("dense" in s for s in stages)
        nodes = logic.finish(parameter_node, result)
    finally:
        logic.close()
    moving = get_node(parameter_node, "movingVolume")
    transform = get_node(parameter_node, "outputTransform")
    assert transform is nodes["transform"] and moving.GetTransformNodeID() == transform.GetID()
    fixed_rois, moving_rois = (get_node(parameter_node, role) for role in ("fixedSegmentation", "movingSegmentation"))
    assert fixed_rois.GetSegmentation().GetNumberOfSegments() == moving_rois.GetSegmentation().GetNumberOfSegments()
    summary = read_parameters(parameter_node).last_summary
    assert summary["methods"] == ["images", "promptreg"] and len(summary["pairs"]) == fixed_rois.GetSegmentation(
    ).GetNumberOfSegments()

    logic.setRoisVisible(parameter_node, False)
    assert not fixed_rois.GetDisplayNode().GetVisibility() and not moving_rois.GetDisplayNode().GetVisibility()
    logic.setRoisVisible(parameter_node, True)
    assert fixed_rois.GetDisplayNode().GetVisibility()
    logic.setTransformApplied(parameter_node, False)
    assert moving.GetTransformNodeID() is None
    logic.setTransformApplied(parameter_node, True)
    assert moving.GetTransformNodeID() == transform.GetID()
    before = slicer.util.arrayFromVolume(moving).copy()
    logic.hardenTransform(parameter_node)  # Slicer's own resampling, kept as the secondary action
    assert moving.GetTransformNodeID() is None
    after = slicer.util.arrayFromVolume(moving)
    # Slicer hardens a warped volume by resampling it through the field onto a grid that holds the warped
    # extent (here one voxel larger per axis), as it does for any non-linear transform
    assert after.shape != before.shape or not np.array_equal(after, before)
    assert np.isfinite(after).all() and after.std() > 0.5 * before.std()


def test_register_with_nothing_ticked_registers_the_images_and_counterparts_make_point_pairs(module,
                                                                                              scene_with_inputs):
    """Register with no prompt ticked: the image registration (a transform, empty ROI segmentations, no model).
    Then points on the fixed volume as counterparts of the first moving points: those become point pairs (their
    landmark pairs are in the result), the other moving points stay clicks."""
    logic = module.PromptRegisterLogic()
    parameter_node = scene_with_inputs
    values = read_parameters(parameter_node)
    values.model, values.device, values.marginal_samples, values.use_points = "classical", "cpu", 0, False
    try:
        logic.start(parameter_node, values)
        result = wait_for_end(logic)[-1]
        assert result["type"] == "result", result
        assert result["model"] == "none" and result["summary"]["methods"] == ["images"]
        nodes = logic.finish(parameter_node, result)
        assert nodes["transform"] is not None
        assert get_node(parameter_node, "fixedSegmentation").GetSegmentation().GetNumberOfSegments() == 0

        moving_points = get_node(parameter_node, "pointPrompts")
        counterparts = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "fixed points")
        ras = [0.0, 0.0, 0.0]
        moving_points.GetNthControlPointPositionWorld(0, ras)
        counterparts.AddControlPoint(*ras)  # the same place: the sample crops are roughly aligned
        set_node(parameter_node, "fixedPointPrompts", counterparts)
        values.use_points = True
        logic.start(parameter_node, values)
        result = wait_for_end(logic)[-1]
        assert result["type"] == "result", result
        summary = result["summary"]
        assert summary["methods"][0] == "images" and "point pairs" in summary["methods"]
        assert "promptreg" in summary["methods"]  # the moving points without a counterpart
        assert any(pair["name"] == "point pair 1 (points)" for pair in summary["pairs"])
    finally:
        set_node(parameter_node, "fixedPointPrompts", None)
        logic.close()


def test_run_batch_registers_a_manifest_in_the_worker_from_the_console(module, tmp_path, hippocampus_paths):
    """The console call of the user guide: logic.runBatch(manifest, outDir, ...) -> the summary records; the pairs
    run in the worker's Python (here in the worker itself, workers=0), nothing is added to the scene."""
    from promptregister.io import read_label_map

    logic = module.PromptRegisterLogic()
    (fixed_image, fixed_labels), (moving_image, moving_labels) = hippocampus_paths("001"), hippocampus_paths("004")
    labels = read_label_map(moving_labels)
    middles = [np.argwhere(labels.array == label) for label in (1, 2)]
    middle_points = [labels.geometry.index_to_physical(voxels[len(voxels) // 2][::-1].astype(float)) for voxels in middles]
    points = ";".join(",".join(f"{v:.3f}" for v in point) for point in middle_points)
    lines = ["id,fixed,moving,points,fixed_labels,moving_labels",
             f'001-004,{fixed_image},{moving_image},"{points}",{fixed_labels},{moving_labels}']
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    nodes_before = slicer.mrmlScene.GetNumberOfNodes()
    shown = []
    try:
        records = logic.runBatch(str(tmp_path / "pairs.csv"), str(tmp_path / "cohort"), workers=0, model="classical",
                                 report=False, options={"marginal_samples": 0},
                                 onProgress=lambda stage, fraction: shown.append((stage, fraction)))
    finally:
        logic.close()
    assert [record["id"] for record in records] == ["001-004"]
    assert records[0]["status"] == "ok" and 0 < records[0]["dice_after"] <= 1
    assert shown[0] == ("batch", 0.0) and shown[-1] == ("batch", 1.0)
    assert (tmp_path / "cohort" / "summary.csv").is_file() and (tmp_path / "cohort" / "001-004" / "transform.h5").is_file()
    assert slicer.mrmlScene.GetNumberOfNodes() == nodes_before
