"""The browser app's workflow without a browser: Slicer's real slice views (trame-slicer's direct view factory,
rendered offscreen by VTK), the real MRML scene, the module's RegistrationRun and InteractiveLoop with a real worker
subprocess (the classical segmenter: no weights, so the steps stay short). Clicks go in as VTK mouse events on
the views' interactors, as the browser's do."""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "PromptRegister"))

from browser_helpers import structure_point  # noqa: E402
from promptregister.io.segmentation import pair_colour  # noqa: E402
from promptregister.sample_data import sample_path  # noqa: E402

VIEW_SIZE = (320, 320)


def grab(view) -> np.ndarray:
    """The view's pixels (rows, columns, RGB) as rendered now."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    view.render()
    capture = vtkWindowToImageFilter()
    capture.SetInput(view.render_window())
    capture.ReadFrontBufferOff()
    capture.Update()
    image = capture.GetOutput()
    width, height, _ = image.GetDimensions()
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)[..., :3].astype(int)


def colour_pixels(image: np.ndarray, colour) -> int:
    """Pixels within a few grey levels of a pair's colour (segment fill is blended, outlines are not)."""
    target = np.asarray(colour) * 255
    return int((np.abs(image - target).max(axis=-1) <= 12).sum())


def click(views, name: str, ras, drag_px: int = 0) -> None:
    """A press and release on a view at the pixel where `ras` shows, as the browser sends them."""
    x, y = (int(round(v)) for v in views.xy_of(name, ras))
    interactor = views.views[name].interactor()
    interactor.SetEventInformation(x, y)
    interactor.InvokeEvent("LeftButtonPressEvent")
    interactor.SetEventInformation(x + drag_px, y)
    interactor.InvokeEvent("LeftButtonReleaseEvent")


def wait(session, timeout: float = 300.0) -> list:
    import time

    events, deadline = [], time.monotonic() + timeout
    while session.loop.pending:
        assert time.monotonic() < deadline, f"no answer in {timeout} s: {session.loop.pending}"
        events += session.poll()
        time.sleep(0.05)
    return events + session.poll()


@pytest.fixture(scope="module")
def app():
    from trame_slicer.core import SlicerApp
    from trame_slicer.views import DirectViewFactory

    from PromptRegisterWeb.browser_session import BrowserSession
    from PromptRegisterWeb.pair_views import PairViews, view_definitions

    slicer_app = SlicerApp()
    slicer_app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
    made = {}
    for definition in view_definitions():
        view = slicer_app.view_manager.create_view(definition)
        view.render_window().SetSize(*VIEW_SIZE)
        view.interactor().UpdateSize(*VIEW_SIZE)
        made[definition.singleton_tag] = view
    views = PairViews(made)
    session = BrowserSession(slicer_app.scene, slicer_app.volumes_logic, views, model="classical", device="cpu")
    yield slicer_app, views, session
    session.close()


def test_the_three_views_show_the_pair_and_follow_each_other(app):
    _, views, session = app
    empty = grab(views.views["Fixed"])
    session.load(sample_path("case001_t1.nii.gz"), sample_path("case004_t1.nii.gz"))
    shown = {name: grab(view) for name, view in views.views.items()}
    assert empty.std() == 0
    for name, image in shown.items():  # image content: a slice of brain, not a flat background
        assert image.std() > 20, name
    # the overlay is neither volume alone: it blends the moving one over the fixed one
    assert not np.array_equal(shown["Overlay"], shown["Fixed"])
    assert not np.array_equal(shown["Overlay"], shown["Moving"])
    views.set_opacity(0.0)
    assert np.abs(grab(views.views["Overlay"]) - shown["Fixed"]).mean() < 1
    views.set_opacity(0.5)
    start = views.slice_offset("Fixed")
    views.views["Moving"].set_slice_value(start - 5)  # a scroll on one view
    assert [views.slice_offset(name) for name in ("Fixed", "Overlay")] == [start - 5, start - 5]
    views.linked = False
    views.views["Moving"].set_slice_value(start)
    assert views.slice_offset("Fixed") == start - 5
    views.linked = True
    views.set_slice_offset(start)
    assert session.ready and session.view_state()["rows"] == []
    wait(session)  # the worker opened the session


def test_a_click_on_the_moving_view_becomes_a_pair_drawn_in_both_views(app):
    _, views, session = app
    point = structure_point(sample_path("case004_hippocampus.nii.gz"))
    views.set_slice_offset(point[2])
    before = {name: grab(view) for name, view in views.views.items()}
    click(views, "Moving", point, drag_px=30)  # a drag adjusts window/level: no pair
    assert not session.loop.pending
    click(views, "Moving", point)
    assert [kind for kind, _ in session.loop.pending.values()] == ["prompt"]
    wait(session)
    rows = session.view_state()["rows"]
    assert [row["pair"] for row in rows] == ["p1"]
    for side in ("fixed", "moving"):
        segment = session.loop.nodes[f"{side}_segmentation"].GetSegmentation().GetSegment("p1")
        assert segment is not None and tuple(segment.GetColor()) == pytest.approx(pair_colour(0))
    colour = pair_colour(0)
    for name in ("Moving", "Fixed"):  # the pair's colour appears where it was absent
        assert colour_pixels(grab(views.views[name]), colour) > colour_pixels(before[name], colour) + 10, name
    assert "p1 added" in session.view_state()["message"]


def test_a_click_on_the_fixed_view_corrects_the_chosen_pair_only(app):
    _, views, session = app
    point = structure_point(sample_path("case001_hippocampus.nii.gz"))
    views.set_slice_offset(point[2])
    click(views, "Fixed", point)
    assert not session.loop.pending and "choose it in the table first" in session.view_state()["message"]
    session.selected = "p1"
    click(views, "Fixed", point)
    wait(session)
    assert session.view_state()["rows"][0]["corrected"] == "yes"


def test_update_transform_moves_the_moving_view_and_gives_a_verdict(app):
    _, views, session = app
    before = grab(views.views["Moving"])
    session.update_transform()
    wait(session)
    transform = session.loop.nodes["transform"]
    assert session.moving_node.GetParentTransformNode() is transform
    assert session.loop.nodes["moving_segmentation"].GetParentTransformNode() is transform
    assert np.abs(grab(views.views["Moving"]) - before).mean() > 1  # the moving volume was resampled
    state = session.view_state()
    assert state["has_transform"] and state["rows"][0]["dice after fit"] != ""
    assert state["verdict"].startswith(("Better than before", "Worse than before"))


def test_the_downloads_open_as_slicer_and_itk_files(app, tmp_path):
    from PromptRegisterWeb.exports import DOWNLOADS, export

    _, _, session = app
    files = {what: export(session, what, tmp_path) for what in DOWNLOADS}
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(DOWNLOADS.values())  # no partial files
    transform = sitk.ReadTransform(str(files["transform"]))
    assert "DisplacementField" in transform.GetName() or "DisplacementField" in str(transform)
    for side in ("fixed", "moving"):
        header = files[f"{side}_segmentation"].read_bytes()[:4000].decode("latin-1")
        assert "Segment0_ID:=p1" in header
    with zipfile.ZipFile(files["scene"]) as bundle:
        names = bundle.namelist()
    assert any(name.endswith(".mrml") for name in names) and any(name.endswith(".h5") for name in names)


def test_delete_and_undo_change_the_rows(app):
    _, _, session = app
    session.delete("p1")
    wait(session)
    assert session.view_state()["rows"] == []
    session.undo()
    wait(session)
    assert [row["pair"] for row in session.view_state()["rows"]] == ["p1"]


def test_the_page_refuses_a_volume_outside_the_data_folder(tmp_path):
    from trame.app import get_server

    from PromptRegisterWeb.access import DataFolder
    from PromptRegisterWeb.app import WebApp, WebConfig

    data = tmp_path / "data"
    data.mkdir()
    (data / "fixed.nii.gz").write_bytes(sample_path("case001_t1.nii.gz").read_bytes())
    (tmp_path / "outside.nii.gz").write_bytes(sample_path("case004_t1.nii.gz").read_bytes())
    server = get_server("test-data-folder", client_type="vue3")
    web = WebApp(server, WebConfig(data=DataFolder(data), model="classical"))
    try:
        assert server.state.data_files == ["fixed.nii.gz"]
        server.state.fixed_name, server.state.moving_name = "fixed.nii.gz", "../outside.nii.gz"  # a hostile page
        web.open_named()
        assert "outside the data folder" in server.state.message
        assert web.session.fixed_node is None and not web.session.ready
    finally:
        web.close()
    assert not web.private.exists()
