"""The browser app's three slice views: the fixed volume, the moving volume, and the moving over the fixed.

They are Slicer's own slice views (trame-slicer's SliceView over the MRML scene), so the volumes, the pairs'
segmentations and the grid transform show as Slicer shows them. This module knows the views only; what a click
means is the browser session's business (browser_session.py).

- The three views share their slice position (in RAS millimetres) when `linked`: scrolling one scrolls all.
- The fixed pairs show on the fixed view and on the overlay; the moving pairs on the moving view.
- A click is a press and release within a few pixels (a drag adjusts window/level, as in Slicer); it is reported
  as (view name, RAS point) to `on_click`. The point under the mouse is kept in `cursor` for the page to show.
- Each view is fitted to its volume when the browser gives it its size, except a view whose volume is under a
  non-linear transform: Slicer cannot fit a slice to that ("Cannot handle non-linear transforms"), so that view
  keeps its framing.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

VIEW_NAMES = ("Fixed", "Moving", "Overlay")
VIEW_COLOURS = {"Fixed": "#3d8bd9", "Moving": "#e0a030", "Overlay": "#7a7a7a"}
CLICK_TOLERANCE_PX = 4
"""A press and release further apart than this are a drag, not a click."""


def view_definitions() -> List:
    """The three slice views, axial, for trame-slicer's layout (one row)."""
    from trame_slicer.views import ViewLayoutDefinition

    return [ViewLayoutDefinition.slice_view("Axial", label=name, color=VIEW_COLOURS[name]) for name in VIEW_NAMES]


def layout():
    """trame-slicer's Layout: the three views side by side."""
    from trame_slicer.views import Layout, LayoutDirection

    return Layout(LayoutDirection.Horizontal, view_definitions())


class PairViews:
    """The fixed, moving and overlay slice views of one scene.

    Arguments:
        views: the trame-slicer SliceView of each name in VIEW_NAMES (made by the view manager's factory: remote
            views in the app, direct ones in tests).
        on_click: called with (view name, RAS point) for a click on any view.
    """

    def __init__(self, views: Dict[str, object], on_click: Optional[Callable[[str, List[float]], None]] = None):
        missing = [name for name in VIEW_NAMES if views.get(name) is None]
        if missing:
            raise ValueError(f"views missing: {', '.join(missing)}")
        self.views = views
        self.on_click = on_click or (lambda name, ras: None)
        self.linked = True
        self.cursor: Optional[tuple] = None  # (view name, RAS point) under the mouse
        self._pressed: Dict[str, Sequence[int]] = {}
        self._following = False
        self._volumes: Dict[str, object] = {}  # the volume each view is framed on
        for name, view in views.items():
            interactor = view.interactor()
            interactor.AddObserver("LeftButtonPressEvent", lambda caller, event, n=name: self._press(n, caller))
            interactor.AddObserver("LeftButtonReleaseEvent", lambda caller, event, n=name: self._release(n, caller))
            interactor.AddObserver("MouseMoveEvent", lambda caller, event, n=name: self._hover(n, caller))
            # after trame-slicer's own resize observer (priority 0), which resizes the slice node first
            interactor.AddObserver("WindowResizeEvent", lambda caller, event, n=name: self.fit(n), -1.0)
            view.get_view_node().AddObserver("ModifiedEvent", lambda caller, event, n=name: self._follow(n))

    # -- what the views show -----------------------------------------------------------------------------------
    def show_volumes(self, fixed_node, moving_node, opacity: float = 0.5) -> None:
        """Fixed, moving, and moving over fixed; each view fitted to its volume (before any grid transform: a
        slice view cannot fit itself to a volume under a non-linear transform)."""
        fixed_id, moving_id = fixed_node.GetID(), moving_node.GetID()
        self.views["Fixed"].set_background_volume_id(fixed_id)
        self.views["Fixed"].set_foreground_volume_id(None)
        self.views["Moving"].set_background_volume_id(moving_id)
        self.views["Moving"].set_foreground_volume_id(None)
        self.views["Overlay"].set_background_volume_id(fixed_id)
        self.views["Overlay"].set_foreground_volume_id(moving_id)
        self.set_opacity(opacity)
        self._volumes = {"Fixed": fixed_node, "Moving": moving_node, "Overlay": fixed_node}
        for name in VIEW_NAMES:
            self.fit(name)

    def fit(self, name: str) -> None:
        """Frame a view on its volume (unless a non-linear transform moves that volume: see the module doc)."""
        node = self._volumes.get(name)
        if node is None:
            return
        transform = node.GetParentTransformNode()
        while transform is not None:
            if not transform.IsLinear():
                return
            transform = transform.GetParentTransformNode()
        self.views[name].fit_view_to_content()

    def set_opacity(self, opacity: float) -> None:
        """How much of the moving volume the overlay shows over the fixed one (0: fixed only, 1: moving only)."""
        self.views["Overlay"].set_foreground_opacity(min(1.0, max(0.0, float(opacity))))

    def show_segmentations(self, fixed_segmentation, moving_segmentation) -> None:
        """The fixed pairs on the fixed view and the overlay, the moving pairs on the moving view (outlines
        and a light fill, as Slicer draws them in 2D)."""
        for node, names in ((fixed_segmentation, ("Fixed", "Overlay")), (moving_segmentation, ("Moving",))):
            display = node.GetDisplayNode()
            if display is None:
                node.CreateDefaultDisplayNodes()
                display = node.GetDisplayNode()
            display.RemoveAllViewNodeIDs()
            for name in names:
                display.AddViewNodeID(self.views[name].get_view_node_id())
        self.render()

    def render(self) -> None:
        for view in self.views.values():
            view.schedule_render()

    # -- slice position ------------------------------------------------------------------------------------------
    def slice_offset(self, name: str) -> float:
        return self.views[name].get_slice_value()

    def set_slice_offset(self, offset: float, name: Optional[str] = None) -> None:
        """Move one view (or, linked, all three) to `offset` mm along its normal."""
        for view_name in ([name] if name and not self.linked else VIEW_NAMES):
            self.views[view_name].set_slice_value(float(offset))

    def _follow(self, name: str) -> None:
        """A view moved (scroll, slider): the others follow when linked."""
        if not self.linked or self._following:
            return
        offset = self.views[name].get_slice_value()
        self._following = True
        try:
            for other in VIEW_NAMES:
                if other != name and abs(self.views[other].get_slice_value() - offset) > 1e-6:
                    self.views[other].set_slice_value(offset)
        finally:
            self._following = False

    # -- clicks --------------------------------------------------------------------------------------------------
    def _press(self, name: str, interactor) -> None:
        self._pressed[name] = interactor.GetEventPosition()

    def _release(self, name: str, interactor) -> None:
        pressed = self._pressed.pop(name, None)
        released = interactor.GetEventPosition()
        if pressed is None or max(abs(a - b) for a, b in zip(pressed, released)) > CLICK_TOLERANCE_PX:
            return
        self.on_click(name, self.ras_at(name, released))

    def _hover(self, name: str, interactor) -> None:
        self.cursor = (name, self.ras_at(name, interactor.GetEventPosition()))

    def geometry(self) -> Dict[str, dict]:
        """Each view's pixel -> RAS matrix (row-major, VTK display pixels from the bottom left) and its size in
        pixels: what a page script (or a test) needs to turn a point into the pixel where it shows."""
        found = {}
        for name, view in self.views.items():
            matrix = view.get_view_node().GetXYToRAS()
            found[name] = {"xy_to_ras": [matrix.GetElement(r, c) for r in range(4) for c in range(4)],
                           "size": list(view.render_window().GetSize())}
        return found

    def ras_at(self, name: str, xy: Sequence[float]) -> List[float]:
        """The RAS point under pixel (x, y) of a view (VTK's display coordinates: origin at the bottom left)."""
        matrix = self.views[name].get_view_node().GetXYToRAS()
        point = (float(xy[0]), float(xy[1]), 0.0, 1.0)
        return [sum(matrix.GetElement(row, column) * point[column] for column in range(4)) for row in range(3)]

    def xy_of(self, name: str, ras: Sequence[float]) -> List[float]:
        """The pixel of a view where a RAS point on its slice shows (the inverse of ras_at; for tests and the
        benchmark, which click where a structure is)."""
        import vtk

        inverse = vtk.vtkMatrix4x4()
        vtk.vtkMatrix4x4.Invert(self.views[name].get_view_node().GetXYToRAS(), inverse)
        point = (float(ras[0]), float(ras[1]), float(ras[2]), 1.0)
        return [sum(inverse.GetElement(row, column) * point[column] for column in range(4)) for row in range(2)]
