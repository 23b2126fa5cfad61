"""MRML nodes <-> engine data. The only place where Slicer's RAS meets the
engine's LPS: x and y change sign here and nowhere else.

- volumes: vtkMRMLScalarVolumeNode <-> promptregister.Volume (LPS geometry);
- point prompts: markups control points (RAS, world) -> LPS points;
- results: ROI label maps -> two segmentation nodes whose segment k has the
  same name and colour; transform.h5 -> a grid transform node whose
  FromParent is the engine's fixed -> moving (resampling) field.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from promptregister.geometry import Geometry
from promptregister.io.segmentation import pair_colour
from promptregister.roipairs import RoiPairs
from promptregister.volume import Volume

from .transforms import attach, mark_module_transform

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])  # its own inverse



def ras_to_lps(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=float) @ LPS_FROM_RAS.T


def lps_to_ras(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=float) @ LPS_FROM_RAS.T


# -- volumes -----------------------------------------------------------------------------------------
def _ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def volume_from_node(node, parent_matrix: Optional[np.ndarray] = None) -> Volume:
    """The engine's view of a scalar volume node (array (k, j, i), LPS geometry).

    Arguments:
        parent_matrix: a linear RAS transform (4x4) the node is under (transforms.chain_matrix of its user
            chain); the geometry is then the one the chain places the voxels at, exactly, without resampling.
            Without it, the data as stored.
    """
    image = node.GetImageData()
    if image is None:
        raise ValueError(f"volume node {node.GetName()!r} has no image data")
    i, j, k = image.GetDimensions()
    scalars = image.GetPointData().GetScalars()
    if scalars.GetNumberOfComponents() != 1:
        raise ValueError(f"volume node {node.GetName()!r} has {scalars.GetNumberOfComponents()} components; "
                         "PromptRegister needs a scalar (grey-level) volume")
    array = numpy_support.vtk_to_numpy(scalars).reshape(k, j, i).copy()
    ijk_to_ras = _ijk_to_ras(node)
    if parent_matrix is not None:
        ijk_to_ras = np.asarray(parent_matrix, dtype=float) @ ijk_to_ras
    ijk_to_lps = LPS_FROM_RAS @ ijk_to_ras[:3, :3]
    spacing = np.linalg.norm(ijk_to_lps, axis=0)
    direction = ijk_to_lps / spacing
    origin = LPS_FROM_RAS @ ijk_to_ras[:3, 3]
    return Volume(array, Geometry.create((i, j, k), spacing, origin, direction))


def node_from_volume(scene, volume: Volume, name: str):
    """A new scalar volume node in `scene` holding `volume` (used for loading results and in tests)."""
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name)
    scene.AddNode(node)
    update_node_from_volume(node, volume)
    return node


def update_node_from_volume(node, volume: Volume) -> None:
    array = np.ascontiguousarray(volume.array)
    image = vtk.vtkImageData()
    k, j, i = array.shape
    image.SetDimensions(i, j, k)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.ravel(), deep=True))
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(ijk_to_ras_matrix(volume.geometry))


def ijk_to_ras_matrix(geometry: Geometry):
    """The vtkMatrix4x4 from voxel index to RAS of an engine (LPS) geometry."""
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = LPS_FROM_RAS @ geometry.direction_matrix @ np.diag(geometry.spacing)
    ijk_to_ras[:3, 3] = LPS_FROM_RAS @ np.asarray(geometry.origin)
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, ijk_to_ras[r, c])
    return matrix


# -- prompts ----------------------------------------------------------------------------------------------
def point_prompts(markups_node) -> List[dict]:
    """Control points of a markups node as worker point prompts (LPS mm). A point whose label starts
    with '-' or 'neg' is a negative prompt (outside the structure); every other point is positive."""
    prompts = []
    for index in range(markups_node.GetNumberOfControlPoints()):
        ras = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(index, ras)
        label = (markups_node.GetNthControlPointLabel(index) or "").strip().lower()
        positive = not (label.startswith("-") or label.startswith("neg"))
        prompts.append({"lps": ras_to_lps(np.array(ras)).tolist(), "positive": positive})
    return prompts


# -- results ----------------------------------------------------------------------------------------------
def register_segmentation_converters() -> None:
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if not factory.GetConverterRules():
        factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
        factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())


def oriented_mask(mask: np.ndarray, geometry: Geometry):
    image = slicer.vtkOrientedImageData()
    k, j, i = mask.shape
    image.SetDimensions(i, j, k)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask.astype(np.uint8).ravel(), deep=True))
    image.SetImageToWorldMatrix(ijk_to_ras_matrix(geometry))
    return image


def segmentation_nodes(scene, pairs: RoiPairs, base_name: str) -> Tuple[object, object]:
    """Two segmentation nodes, '<base> ROIs (fixed)' and '<base> ROIs (moving)'; segment k is pair k in both,
    with the same name and colour."""
    register_segmentation_converters()
    nodes = []
    for side in ("fixed", "moving"):
        node = slicer.vtkMRMLSegmentationNode()
        node.SetName(f"{base_name} ROIs ({side})")
        scene.AddNode(node)
        node.CreateDefaultDisplayNodes()
        geometry = pairs.fixed_geometry if side == "fixed" else pairs.moving_geometry
        for index, pair in enumerate(pairs):
            mask = pair.fixed_mask if side == "fixed" else pair.moving_mask
            node.AddSegmentFromBinaryLabelmapRepresentation(oriented_mask(mask, geometry), pair.name,
                                                            pair_colour(index))
        nodes.append(node)
    return nodes[0], nodes[1]


def transform_node_from_file(scene, path: Path, name: str):
    """A grid transform node read from the engine's transform.h5 (it becomes the node's FromParent)."""
    node = slicer.vtkMRMLGridTransformNode()
    node.SetName(name)
    scene.AddNode(node)
    storage = slicer.vtkMRMLTransformStorageNode()
    scene.AddNode(storage)
    node.SetAndObserveStorageNodeID(storage.GetID())
    mark_module_transform(node)
    read_transform_into(node, path)
    return node


def read_transform_into(node, path: Path) -> None:
    """Read the engine's transform.h5 into an existing grid transform node (through its storage node), so
    everything under the node follows; interpolation linear, as the engine's."""
    storage = node.GetStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise ValueError(f"could not read the transform {path}")
    node.SetAttribute(INTERPOLATION_ATTRIBUTE, "linear")  # saved with the scene, see restore_interpolation
    node.GetTransformFromParent().SetInterpolationModeToLinear()


INTERPOLATION_ATTRIBUTE = "PromptRegister.interpolation"
"""Marks the grid transforms the engine wrote. Slicer reads grid transforms with cubic interpolation; the
engine (ITK) interpolates the field linearly, and linear makes Slicer map every point exactly as the engine does
(cubic differs by up to a few hundredths of a mm on our smooth fields). The interpolation mode itself is not
stored in the file, so a reopened scene needs `restore_interpolation`."""


def restore_interpolation(scene) -> int:
    """Linear interpolation again for the engine's grid transforms in a (re)loaded scene; returns how many."""
    count = 0
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLGridTransformNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLGridTransformNode")
        if node.GetAttribute(INTERPOLATION_ATTRIBUTE) == "linear" and node.GetTransformFromParent() is not None:
            node.GetTransformFromParent().SetInterpolationModeToLinear()
            count += 1
    return count


def results_to_scene(scene, files: dict, moving_node, base_name: str) -> dict:
    """Load a registration's files into the scene: ROI segmentations, the grid transform (observed by the
    moving volume, above any pre-alignment of the user's: see transforms.py)."""
    folder = Path(files["pairs.json"]).parent
    pairs = RoiPairs.load(folder)
    fixed_segments, moving_segments = segmentation_nodes(scene, pairs, base_name)
    transform = transform_node_from_file(scene, Path(files["transform.h5"]), f"{base_name} transform")
    attach(moving_node, transform)
    moving_segments.SetAndObserveTransformNodeID(transform.GetID())
    return {"fixed_segmentation": fixed_segments, "moving_segmentation": moving_segments, "transform": transform,
            "pairs": pairs}


def map_points_ras(transform_node, points_ras: Sequence[Sequence[float]]) -> np.ndarray:
    """Fixed RAS points -> moving RAS points through the node's FromParent (resampling) transform."""
    from_parent = transform_node.GetTransformFromParent()
    return np.array([from_parent.TransformPoint([float(v) for v in p]) for p in points_ras])
