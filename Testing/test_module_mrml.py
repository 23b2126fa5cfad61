"""The module's MRML behaviour with real nodes (slicer-core) and a real worker: the parameter node across Close
Scene and scene loading, a worker killed mid-run, the side-by-side layout, the user's own transforms, and
Resample giving exactly what `promptregister warp` gives."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import slicer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "PromptRegister"))

from mrml_helpers import clicks_on_labels, wait_for_end  # noqa: E402
from test_mrml_logic import reopen_scene, save_scene  # noqa: E402
from PromptRegisterLib.registration_run import RegistrationRun  # noqa: E402
from PromptRegisterLib.module_logic import ModuleLogic  # noqa: E402
from PromptRegisterLib.mrml import node_from_volume, volume_from_node  # noqa: E402
from PromptRegisterLib.parameters import (Parameters, find_or_create_parameter_node, get_node,  # noqa: E402
                                          read_parameters, set_node, write_parameters)
from PromptRegisterLib.resample import resample_volume  # noqa: E402
from PromptRegisterLib.transforms import TransformChainError, is_module_transform  # noqa: E402
from PromptRegisterLib.views import acquisition_orientation, show_side_by_side  # noqa: E402
from promptregister.geometry import Geometry  # noqa: E402
from promptregister.io import read_volume  # noqa: E402
from promptregister.volume import Volume  # noqa: E402

REQUEST = dict(model="classical", device="cpu", options={"marginal_samples": 0})


def small_volume(scene, name: str, spacing=(1.0, 1.0, 1.0)):
    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    return node_from_volume(scene, Volume(array, Geometry.create((6, 5, 4), spacing)), name)


def translation_node(scene, shift_ras):
    import vtk

    node = slicer.vtkMRMLLinearTransformNode()
    node.SetName("my pre-alignment")
    scene.AddNode(node)
    matrix = vtk.vtkMatrix4x4()
    for axis in range(3):
        matrix.SetElement(axis, 3, float(shift_ras[axis]))
    node.SetMatrixTransformToParent(matrix)
    return node


# -- the parameter node -------------------------------------------------------------------------------
def test_parameter_node_after_close_scene_is_the_scenes_and_its_references_resolve():
    scene = slicer.vtkMRMLScene()
    node = find_or_create_parameter_node(scene)
    write_parameters(node, Parameters(text="prostate", use_text=True))
    set_node(node, "fixedVolume", small_volume(scene, "old fixed"))
    scene.Clear(0)  # Close Scene keeps singletons but resets them (their ModuleName too)
    again = find_or_create_parameter_node(scene)
    assert scene.IsNodePresent(again) and again.GetAttribute("ModuleName") == "PromptRegister"
    assert scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 1
    assert read_parameters(again).text == "", "the closed scene's settings came back"
    fixed = small_volume(scene, "new fixed")
    set_node(again, "fixedVolume", fixed)
    assert get_node(again, "fixedVolume") is fixed, "a picked volume must not snap back to empty"


@pytest.mark.parametrize("bundle", [False, True], ids=["mrml", "mrb"])
def test_a_loaded_scene_shows_its_own_settings(tmp_path, bundle):
    saved_scene = slicer.vtkMRMLScene()
    node = find_or_create_parameter_node(saved_scene)
    chosen = Parameters(use_text=True, text="hippocampus", model="classical", search_mm=7.5)
    write_parameters(node, chosen)
    set_node(node, "fixedVolume", small_volume(saved_scene, "fixed"))
    set_node(node, "movingVolume", small_volume(saved_scene, "moving"))
    path = save_scene(saved_scene, tmp_path / "saved", bundle)

    # the application's scene already has its own parameter node when the user loads the file
    scene = reopen_scene(path, tmp_path / "cache") if bundle else slicer.vtkMRMLScene()
    if not bundle:
        write_parameters(find_or_create_parameter_node(scene), Parameters(text="before loading"))
        scene.Clear(0)
        scene.SetURL(str(path))
        assert scene.Import()
    loaded = find_or_create_parameter_node(scene)
    assert scene.IsNodePresent(loaded) and read_parameters(loaded) == chosen
    assert get_node(loaded, "fixedVolume").GetName() == "fixed"
    assert get_node(loaded, "movingVolume").GetName() == "moving"
    assert scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 1


# -- the worker ---------------------------------------------------------------------------------------
def test_a_worker_killed_during_a_run_is_reported_and_register_works_again(hippocampus):
    scene = slicer.vtkMRMLScene()
    fixed_node = node_from_volume(scene, hippocampus("001")[0], "case001")
    moving, moving_labels = hippocampus("004")
    moving_node = node_from_volume(scene, moving, "case004")
    markups = clicks_on_labels(scene, moving_labels, 2, 1)
    logic = RegistrationRun()
    try:
        logic.start(fixed_node, moving_node, markups_node=markups, **REQUEST)
        events = []
        while not any(event["type"] == "progress" for event in events):
            events += logic.poll()
            time.sleep(0.05)
        logic.client.process.kill()  # as the out-of-memory killer would
        logic.client.process.wait()
        events = wait_for_end(logic, 60)
        assert events[-1]["type"] == "error" and events[-1]["code"] == "died"
        assert "exit code -9" in events[-1]["message"] and "ready" in events[-1]["message"]  # its stderr lines
        assert logic.running_id is None and not logic.cancel()
        logic.start(fixed_node, moving_node, markups_node=markups, **REQUEST)  # a fresh worker takes it
        result = wait_for_end(logic)[-1]
        assert result["type"] == "result", result
    finally:
        logic.close()


# -- views ----------------------------------------------------------------------------------------------
def test_side_by_side_shows_fixed_and_moving_in_the_same_plane_linked():
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    layout_logic = slicer.vtkMRMLLayoutLogic()
    layout_logic.SetMRMLScene(scene)  # creates the layout node and the Red, Yellow, Green slice nodes
    fixed = small_volume(scene, "fixed")
    moving = small_volume(scene, "moving", spacing=(0.8, 3.0, 0.8))  # acquired in coronal slices
    assert acquisition_orientation(moving) == "Coronal" and acquisition_orientation(fixed) == "Axial"
    views = show_side_by_side(scene, fixed, moving)
    layout = layout_logic.GetLayoutNode()
    assert layout.GetViewArrangement() == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    assert views == ("Red", "Yellow")
    for view, volume in zip(views, (fixed, moving)):
        assert scene.GetNodeByID(f"vtkMRMLSliceNode{view}").GetOrientation() == "Coronal"
        composites = [scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
                      for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]
        (composite,) = [c for c in composites if c.GetLayoutName() == view]
        assert composite.GetBackgroundVolumeID() == volume.GetID() and composite.GetForegroundVolumeID() is None
        assert composite.GetLinkedControl()


# -- the user's transforms and Resample ----------------------------------------------------------------------
def test_toggling_the_result_before_there_is_one_keeps_the_users_transform():
    scene = slicer.vtkMRMLScene()
    logic = ModuleLogic()
    node = find_or_create_parameter_node(scene)
    moving = small_volume(scene, "moving")
    mine = translation_node(scene, (1.0, 2.0, 3.0))
    moving.SetAndObserveTransformNodeID(mine.GetID())
    set_node(node, "movingVolume", moving)
    for applied in (False, True, False):
        logic.setTransformApplied(node, applied)
        assert moving.GetTransformNodeID() == mine.GetID()


def test_non_linear_or_fixed_side_transforms_are_refused_before_anything_is_sent():
    scene = slicer.vtkMRMLScene()
    fixed, moving = small_volume(scene, "fixed"), small_volume(scene, "moving")
    grid = slicer.vtkMRMLGridTransformNode()
    grid.SetName("my warp")
    scene.AddNode(grid)
    moving.SetAndObserveTransformNodeID(grid.GetID())
    logic = RegistrationRun()
    with pytest.raises(TransformChainError, match="non-linear transform 'my warp'.*harden"):
        logic.start(fixed, moving, auto=True, **REQUEST)
    moving.SetAndObserveTransformNodeID(None)
    fixed.SetAndObserveTransformNodeID(translation_node(scene, (0, 0, 1)).GetID())
    with pytest.raises(TransformChainError, match="fixed volume 'fixed' is under the transform"):
        logic.start(fixed, moving, auto=True, **REQUEST)
    assert logic.client is None, "nothing may start for a refused request"


def test_a_pre_alignment_is_kept_and_resample_equals_promptregister_warp(hippocampus, tmp_path):
    """The moving scan lies 10 mm off, and the user's own translation puts it back. Registering through that
    transform must equal registering the scan where the transform places it; the result goes above the user's
    transform (never replacing it); Resample equals `promptregister warp` voxel for voxel, for the image and
    for a label map."""
    scene = slicer.vtkMRMLScene()
    fixed_node = node_from_volume(scene, hippocampus("001")[0], "case001")
    moving, moving_labels = hippocampus("004")
    shift_lps = np.array([10.0, 0.0, 0.0])
    off = Geometry.create(moving.geometry.size, moving.geometry.spacing,
                          np.asarray(moving.geometry.origin) + shift_lps, moving.geometry.direction)
    moving_node = node_from_volume(scene, Volume(moving.array, off), "case004 (moved)")
    labels_node = slicer.vtkMRMLLabelMapVolumeNode()
    labels_node.SetName("case004 labels")
    scene.AddNode(labels_node)
    from PromptRegisterLib.mrml import update_node_from_volume

    update_node_from_volume(labels_node, Volume(moving_labels.array.astype(np.int16), off))
    mine = translation_node(scene, (10.0, 0.0, 0.0))  # RAS +10 = LPS -10: back where it was
    for node in (moving_node, labels_node):
        node.SetAndObserveTransformNodeID(mine.GetID())
    markups = clicks_on_labels(scene, moving_labels, 2, 1)  # clicked where the user sees the scan (world)

    logic = RegistrationRun()
    try:
        through = logic.register(scene, fixed_node, moving_node, markups_node=markups, **REQUEST)
        plain_node = node_from_volume(scene, moving, "case004")
        plain = logic.register(scene, fixed_node, plain_node, markups_node=markups, **REQUEST)
        sent = sorted(Path(logic.folder).glob("*.nii"))
        transform_file = tmp_path / "transform.h5"
        transform_file.write_bytes(Path(through["files"]["transform.h5"]).read_bytes())
    finally:
        logic.close()
    assert through["summary"]["pairs"] == plain["summary"]["pairs"]
    result = through["transform"]
    assert is_module_transform(result) and moving_node.GetTransformNodeID() == mine.GetID()
    assert mine.GetTransformNodeID() == result.GetID(), "the result goes above the user's transform"

    engine_input = tmp_path / "moving_as_sent.nii.gz"
    sitk.WriteImage(volume_from_node(plain_node).to_sitk(), str(engine_input))
    labels_input = tmp_path / "labels_as_sent.nii.gz"
    sitk.WriteImage(Volume(moving_labels.array.astype(np.int16), moving.geometry).to_sitk(), str(labels_input))
    reference = tmp_path / "fixed.nii.gz"
    sitk.WriteImage(volume_from_node(fixed_node).to_sitk(), str(reference))
    assert sent, "the volumes went to the worker as uncompressed files"
    for source, flags, node in ((engine_input, [], moving_node), (labels_input, ["--labels"], labels_node)):
        out = tmp_path / f"cli_{source.name.split('.')[0]}.nii.gz"
        subprocess.run([sys.executable, "-m", "promptregister", "warp", "--reference", str(reference), "--moving",
                        str(source), "--transform", str(transform_file), "--out", str(out), *flags], check=True,
                       capture_output=True, timeout=120)
        resampled = resample_volume(scene, node, result, fixed_node)
        expected = read_volume(out).array
        np.testing.assert_array_equal(volume_from_node(resampled).array.astype(expected.dtype), expected)
        assert volume_from_node(resampled).geometry.is_close(volume_from_node(fixed_node).geometry)
    assert resampled.IsA("vtkMRMLLabelMapVolumeNode")


def test_resampling_a_segmentation_leaves_nothing_behind_but_the_result(tmp_path):
    """ExportSegmentsToLabelmapNode gives the temporary label map a display node and a visible
    '<name>_ColorTable' node (vtkSlicerSegmentationsModuleLogic.cxx); after Resample the scene holds the new
    segmentation (and its display node) and nothing else new."""
    from PromptRegisterLib.mrml import oriented_mask, register_segmentation_converters, transform_node_from_file
    from promptregister.io.transforms import displacement_field_transform

    scene = slicer.vtkMRMLScene()
    geometry = Geometry.create((12, 10, 8))
    fixed = node_from_volume(scene, Volume(np.zeros((8, 10, 12), np.float32), geometry), "fixed")
    register_segmentation_converters()
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    segmentation.CreateDefaultDisplayNodes()
    mask = np.zeros((8, 10, 12), bool)
    mask[2:6, 3:7, 4:9] = True
    segmentation.AddSegmentFromBinaryLabelmapRepresentation(oriented_mask(mask, geometry), "structure", (1, 0, 0))
    sitk.WriteTransform(displacement_field_transform(np.zeros((8, 10, 12, 3)), geometry), str(tmp_path / "t.h5"))
    transform = transform_node_from_file(scene, tmp_path / "t.h5", "result")
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    resampled = resample_volume(scene, segmentation, transform, fixed)
    added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())
             if scene.GetNthNode(i).GetID() not in before
             and not scene.GetNthNode(i).IsA("vtkMRMLSubjectHierarchyNode")]  # the scene's singleton, in Slicer always
    assert sorted(node.GetClassName() for node in added) == ["vtkMRMLSegmentationDisplayNode",
                                                              "vtkMRMLSegmentationNode"], [n.GetName() for n in added]
    assert resampled.GetSegmentation().GetNumberOfSegments() == 1


def _remote_logic():
    """A worker started by a command, as an SSH worker is (here this machine's Python): files travel through
    the protocol."""
    return RegistrationRun(command=[sys.executable, "-m", "promptregister.worker"])


def test_a_remote_workers_volumes_and_results_move_a_few_chunks_per_tick_with_progress(hippocampus, monkeypatch):
    """start() sends nothing over the network (a GUI slot must not wait for it); each poll() moves the files on
    and says how far; the result comes once its files are here, and loads. (Each tick's time budget is set to 0
    here, one chunk or one answer a tick, so that a local worker's fast pipe still shows the steps.)"""
    from PromptRegisterLib import transfers

    monkeypatch.setattr(transfers, "TICK_BUDGET_SECONDS", 0.0)
    scene = slicer.vtkMRMLScene()
    fixed_node = node_from_volume(scene, hippocampus("001")[0], "case001")
    moving, moving_labels = hippocampus("004")
    moving_node = node_from_volume(scene, moving, "case004")
    markups = clicks_on_labels(scene, moving_labels, 1, 2)
    logic = _remote_logic()
    try:
        logic.start(fixed_node, moving_node, markups_node=markups, **REQUEST)
        assert logic.running_id == "sending" and logic._transfer.fraction == 0.0
        stages, result, deadline = [], None, time.monotonic() + 300
        while result is None and time.monotonic() < deadline:
            for event in logic.poll():
                assert event["type"] != "error", event
                if event["type"] == "progress":
                    stages.append((event["stage"], event["fraction"]))
                elif event["type"] == "result":
                    result = event
            time.sleep(0.05)
        sending = [fraction for stage, fraction in stages if stage.startswith("sending the volumes")]
        fetching = [fraction for stage, fraction in stages if stage.startswith("bringing the results")]
        assert len(sending) >= 2 and sending == sorted(sending), stages
        assert fetching, "the results came back inside one tick"
        assert result is not None and result["local"]
        assert all(Path(path).is_file() and Path(path).parent.parent == logic.folder
                   for path in result["files"].values())
        nodes = logic.finish(scene, moving_node, result)
        assert moving_node.GetParentTransformNode() is nodes["transform"]
    finally:
        logic.close()


def test_cancel_while_the_volumes_travel_stops_before_the_worker_registers(hippocampus):
    scene = slicer.vtkMRMLScene()
    fixed_node = node_from_volume(scene, hippocampus("001")[0], "case001")
    moving_node = node_from_volume(scene, hippocampus("004")[0], "case004")
    logic = _remote_logic()
    try:
        logic.start(fixed_node, moving_node, **REQUEST)
        logic.poll()
        assert logic.cancel()
        events = logic.poll()
        assert events and events[-1]["code"] == "cancelled" and logic.running_id is None
        time.sleep(0.5)
        assert logic.poll() == []
        started = logic.start(fixed_node, moving_node, **REQUEST)  # and it can start again
        assert started == "sending"
        logic.abandon()
    finally:
        logic.close()
