"""The interactive loop's Logic with real MRML (slicer-core) and a real worker: each answer becomes segments
(same id, name and colour on both sides) and table rows, and every fit updates one transform node in place."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import slicer  # noqa: E402  (the slicer-core wheel)
import vtk
from vtk.util import numpy_support

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "PromptRegister"))

from PromptRegisterLib.interactive import InteractiveLoop  # noqa: E402
from PromptRegisterLib.registration_run import RegistrationRun  # noqa: E402
from PromptRegisterLib.mrml import lps_to_ras, node_from_volume  # noqa: E402

from promptregister.interactive import decode_mask  # noqa: E402

FAST = {"marginal_samples": 0}


def label_ras(labels, count: int, seed: int):
    rng = np.random.default_rng(seed)
    points = []
    for number in range(count):
        voxels = np.argwhere(labels.array == 1 + number % 2)
        kji = voxels[rng.integers(len(voxels))]
        points.append(lps_to_ras(labels.geometry.index_to_physical(kji[::-1].astype(float))).tolist())
    return points


def segment_ids(node):
    """The segment ids, sorted (a refined pair is drawn again, so the order says nothing)."""
    segmentation = node.GetSegmentation()
    return sorted(segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments()))


def field_at(transform_node, ras):
    return np.array(transform_node.GetTransformFromParent().TransformPoint(ras))


@pytest.fixture()
def loop_on_pair(hippocampus):
    def build(command=None):
        scene = slicer.vtkMRMLScene()
        fixed, fixed_labels = hippocampus("001")
        moving, moving_labels = hippocampus("004")
        fixed_node = node_from_volume(scene, fixed, "case001")
        moving_node = node_from_volume(scene, moving, "case004")
        registration = RegistrationRun(command=command)
        messages = []
        loop = InteractiveLoop(registration, scene, on_message=messages.append)
        loop.open(fixed_node, moving_node, model="classical", device="cpu", options=FAST)
        built.append(registration)
        return scene, loop, fixed_node, moving_node, fixed_labels, moving_labels, messages

    built = []
    yield build
    for registration in built:
        registration.close()


def test_each_answer_becomes_paired_segments_and_the_transform_updates_in_place(loop_on_pair):
    scene, loop, fixed_node, moving_node, fixed_labels, moving_labels, messages = loop_on_pair()
    for ras in label_ras(moving_labels, 3, seed=0):
        loop.click(ras)  # sent at once, before the session's "open" has answered
    loop.wait()
    fixed_segments, moving_segments = loop.nodes["fixed_segmentation"], loop.nodes["moving_segmentation"]
    assert segment_ids(fixed_segments) == segment_ids(moving_segments) == ["p1", "p2", "p3"]
    for pair_id in ("p1", "p2", "p3"):
        a, b = fixed_segments.GetSegmentation().GetSegment(pair_id), moving_segments.GetSegmentation().GetSegment(pair_id)
        assert a.GetName() == b.GetName() == loop.pairs[pair_id]["name"] and a.GetColor() == b.GetColor()
    assert loop.nodes["table"].GetNumberOfRows() == 3

    loop.update_transform()
    loop.wait()
    transform = loop.nodes["transform"]
    assert moving_node.GetParentTransformNode() is transform  # the moving volume's display follows
    assert moving_segments.GetParentTransformNode() is transform
    probe = label_ras(fixed_labels, 1, seed=2)[0]
    first = field_at(transform, probe)
    nodes_before = scene.GetNumberOfNodesByClass("vtkMRMLGridTransformNode")

    loop.delete("p2")
    loop.update_transform()
    loop.wait()
    assert loop.nodes["transform"] is transform  # the same node, updated in place
    assert scene.GetNumberOfNodesByClass("vtkMRMLGridTransformNode") == nodes_before
    assert not np.allclose(field_at(transform, probe), first, atol=1e-4)  # it changed with the pairs
    assert segment_ids(fixed_segments) == ["p1", "p3"] and loop.nodes["table"].GetNumberOfRows() == 2
    assert set(loop.dice) == {"p1", "p3"}

    loop.undo()
    loop.wait()
    assert segment_ids(moving_segments) == ["p1", "p2", "p3"]

    fixed_point = label_ras(fixed_labels, 1, seed=7)[0]
    loop.correct("p1", fixed_point)
    loop.wait()
    assert loop.pairs["p1"]["corrected"] and loop.pairs["p1"]["version"] == 2
    # the fixed segment now holds the corrected ROI, and it covers the user's point
    labelmap = fixed_segments.GetSegmentation().GetSegment("p1").GetRepresentation("Binary labelmap")
    voxels = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    corrected = decode_mask(loop.pairs["p1"]["fixed_mask"])
    assert int((voxels > 0).sum()) == int(corrected.sum())
    world_to_image = vtk.vtkMatrix4x4()
    labelmap.GetWorldToImageMatrix(world_to_image)
    i, j, k = (int(round(v)) for v in world_to_image.MultiplyPoint([*fixed_point, 1.0])[:3])
    extent = labelmap.GetExtent()
    dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1]
    assert voxels[(k - extent[4]) * dims[0] * dims[1] + (j - extent[2]) * dims[0] + (i - extent[0])] > 0
    table = loop.nodes["table"]
    row = [table.GetCellText(r, 0) for r in range(table.GetNumberOfRows())].index("p1")
    assert table.GetCellText(row, 8) == "yes"
    assert not messages, messages


def test_bad_answers_become_messages_and_the_loop_goes_on(loop_on_pair):
    _, loop, _, _, _, moving_labels, messages = loop_on_pair()
    loop.click([900.0, 0.0, 0.0])
    loop.correct("p7", [0.0, 0.0, 0.0])
    loop.wait()
    assert len(messages) == 2 and "outside the moving image" in messages[0] and "p7" in messages[1]
    loop.click(label_ras(moving_labels, 1, seed=0)[0])
    loop.wait()
    assert list(loop.pairs) == ["p1"]


def test_a_remote_worker_loop_gets_volumes_and_transform_through_the_protocol(loop_on_pair, tmp_path):
    command = ["env", f"TMPDIR={tmp_path}", sys.executable, "-m", "promptregister.worker"]
    _, loop, _, moving_node, _, moving_labels, messages = loop_on_pair(command)
    assert loop.sending_fraction == 0.0, "open() waited for the volumes to travel (a GUI slot would freeze)"
    for ras in label_ras(moving_labels, 2, seed=3):
        loop.click(ras)  # held until the volumes are there, then sent in order
    loop.update_transform()
    events = loop.wait()
    assert any(e["type"] == "progress" and e["kind"] == "open" for e in events), "no progress while sending"
    fits = [e for e in events if e["type"] == "result" and e["kind"] == "fit"]
    assert fits and fits[-1]["local"], "the fit's transform was not brought back by poll()"
    assert len(loop.pairs) == 2
    assert loop.client.remote and Path(loop.client.hello["folder"]).parent == tmp_path
    transform = loop.nodes["transform"]
    assert moving_node.GetParentTransformNode() is transform
    stored = Path(transform.GetStorageNode().GetFileName())
    assert stored.is_file() and tmp_path not in stored.parents  # read from this side's copy
    assert not messages, messages
