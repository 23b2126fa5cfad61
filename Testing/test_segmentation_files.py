"""The ROI pairs as Slicer segmentation files (issue #14 item 4), read back by slicer-core's real MRML reader
(vtkMRMLSegmentationStorageNode): every pair a named, coloured segment, overlapping pairs in layers, each voxel
where the label maps put it."""

from __future__ import annotations

import numpy as np
import pytest
import slicer  # the slicer-core wheel (test extra)

from promptregister.geometry import Geometry
from promptregister.io.segmentation import layer_assignment, read_segmentation, write_segmentation
from promptregister.roipairs import RoiPair, RoiPairs


def read_with_mrml(path):
    """{segment ID: (name, colour, set of RAS voxel centres rounded to 0.01 mm)} as Slicer loads the file."""
    import vtk
    from vtk.util import numpy_support

    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    segmentation = node.GetSegmentation()
    found = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetNthSegment(index)
        labelmap = slicer.vtkOrientedImageData()
        assert node.GetBinaryLabelmapRepresentation(segment_id, labelmap)
        extent = labelmap.GetExtent()
        values = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(
            extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
        k, j, i = np.nonzero(values)
        matrix = vtk.vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(matrix)
        to_world = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        ijk = np.stack([i + extent[0], j + extent[2], k + extent[4], np.ones_like(i)])
        ras = (to_world @ ijk)[:3].T
        found[segment_id] = (segment.GetName(), segment.GetColor(), {tuple(p) for p in np.round(ras, 2)})
    return found


def ras_centres(mask: np.ndarray, geometry: Geometry) -> set:
    kji = np.argwhere(mask)
    lps = geometry.index_to_physical(kji[:, ::-1].astype(float))
    return {tuple(p) for p in np.round(lps * [-1, -1, 1], 2)}


def test_overlapping_regions_on_an_oblique_grid_load_in_slicer_where_they_are(tmp_path):
    geometry = Geometry.create((20, 16, 12), (1.0, 1.5, 2.0), (3.0, -4.0, 5.0), (0, -1, 0, 1, 0, 0, 0, 0, 1))
    masks = [np.zeros(geometry.shape, bool) for _ in range(3)]
    masks[0][2:6, 3:9, 4:10] = True
    masks[1][4:8, 5:12, 6:15] = True  # overlaps the first: a second layer
    masks[2][9:11, 0:2, 0:3] = True  # overlaps neither: shares the first layer
    assert layer_assignment(masks) == [0, 1, 0]
    colours = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    path = write_segmentation(masks, ["ROI 1", "ROI 2", "ROI 3"], geometry, tmp_path / "rois.seg.nrrd", colours)
    loaded = read_with_mrml(path)
    assert sorted(loaded) == ["pair_1", "pair_2", "pair_3"]
    for number, (mask, colour) in enumerate(zip(masks, colours), start=1):
        name, shown, voxels = loaded[f"pair_{number}"]
        assert name == f"ROI {number}" and shown == pytest.approx(colour, abs=1e-3)
        assert voxels == ras_centres(mask, geometry)
    back, names, back_geometry = read_segmentation(path)
    assert names == ["ROI 1", "ROI 2", "ROI 3"] and back_geometry.is_close(geometry)
    for original, read in zip(masks, back):
        np.testing.assert_array_equal(original, read)
    assert [p.name for p in tmp_path.iterdir()] == ["rois.seg.nrrd"]  # no temporary left beside it


def test_saved_pairs_have_one_segmentation_a_side_with_matching_names_and_colours(tmp_path, hippocampus):
    _, fixed = hippocampus("001")
    _, moving = hippocampus("004")
    pairs = RoiPairs.from_label_maps(fixed, moving)
    pairs.append(RoiPair(fixed.array > 0, moving.array > 0, 0.9, {"method": "samreg"}, "whole"))  # overlaps both
    written = pairs.save(tmp_path)
    fixed_side, moving_side = read_with_mrml(written["fixed_segmentation"]), read_with_mrml(written["moving_segmentation"])
    for number, pair in enumerate(pairs, start=1):
        name, colour, voxels = fixed_side[f"pair_{number}"]
        assert name == pair.name and voxels == ras_centres(pair.fixed_mask, fixed.geometry)
        moving_name, moving_colour, moving_voxels = moving_side[f"pair_{number}"]
        assert moving_name == pair.name and moving_colour == colour  # pair k looks alike on both sides
        assert moving_voxels == ras_centres(pair.moving_mask, moving.geometry)
    assert len({colour for _, colour, _ in fixed_side.values()}) == len(pairs)
