"""Fixed and moving side by side, in the same orientation, linked.

Slicer's "Side by side" layout shows two slice views, Red and Yellow. Both get
the moving volume's acquisition plane (the plane normal to its most widely
spaced axis, the axis SAM's slices are taken across), and their composite
nodes are linked so that scrolling one scrolls the other. Only MRML nodes are
touched here; fitting the views to the volumes needs the application
(PromptRegister.py does it).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import slicer
import vtk

SIDE_BY_SIDE_VIEWS = ("Red", "Yellow")  # vtkMRMLLayoutLogic's side-by-side layout holds these two slice views
ORIENTATION_OF_AXIS = {0: "Sagittal", 1: "Coronal", 2: "Axial"}  # the RAS axis a slice plane is normal to


def acquisition_orientation(volume_node) -> str:
    """'Axial', 'Coronal' or 'Sagittal': the plane the volume was acquired in (normal to its largest-spacing
    axis; the third voxel axis when all spacings are equal)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])
    spacing = np.linalg.norm(ijk_to_ras, axis=0)
    through_plane = int(np.argmax(spacing)) if np.ptp(spacing) > 1e-6 * spacing.max() else 2
    normal = ijk_to_ras[:, through_plane] / spacing[through_plane]
    return ORIENTATION_OF_AXIS[int(np.argmax(np.abs(normal)))]


def composite_node(scene, layout_name: str):
    """The slice composite node of a view (the application creates one per slice view; made here if missing)."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        if node.GetLayoutName() == layout_name:
            return node
    node = slicer.vtkMRMLSliceCompositeNode()
    node.SetLayoutName(layout_name)
    return scene.AddNode(node)


def show_side_by_side(scene, fixed_node, moving_node, layout_node=None,
                      orientation: Optional[str] = None) -> Tuple[str, ...]:
    """Switch to the side-by-side layout: fixed in Red, moving in Yellow, the same orientation, linked.

    Arguments:
        layout_node: the application's layout node (default: the scene's singleton).
        orientation: 'Axial', 'Coronal' or 'Sagittal' (default: the moving volume's acquisition plane).
    Returns the names of the slice views used.
    """
    if fixed_node is None or moving_node is None:
        raise ValueError("choose a fixed and a moving volume first")
    layout_node = layout_node or scene.GetSingletonNode("vtkMRMLLayoutNode", "vtkMRMLLayoutNode")
    if layout_node is None:
        raise ValueError("the scene has no layout node (is this the application's scene?)")
    orientation = orientation or acquisition_orientation(moving_node)
    layout_node.SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
    for view, volume in zip(SIDE_BY_SIDE_VIEWS, (fixed_node, moving_node)):
        slice_node = scene.GetNodeByID(f"vtkMRMLSliceNode{view}")
        if slice_node is None:
            raise ValueError(f"the scene has no {view} slice view")
        slice_node.SetOrientation(orientation)
        composite = composite_node(scene, view)
        composite.SetBackgroundVolumeID(volume.GetID())
        composite.SetForegroundVolumeID(None)
        composite.SetLabelVolumeID(None)
        composite.SetLinkedControl(True)
    return SIDE_BY_SIDE_VIEWS
