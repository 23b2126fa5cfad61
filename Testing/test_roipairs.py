"""ROI pairs: construction from label maps, validation, lossless save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from promptregister import PromptRegisterError
from promptregister.roipairs import RoiPair, RoiPairs


def test_from_label_maps_pairs_label_k_with_label_k(hippocampus):
    _, fixed = hippocampus("001")
    _, moving = hippocampus("004")
    pairs = RoiPairs.from_label_maps(fixed, moving)
    assert [p.name for p in pairs] == ["label 1", "label 2"]
    np.testing.assert_array_equal(pairs[1].fixed_mask, fixed.array == 2)
    np.testing.assert_array_equal(pairs[1].moving_mask, moving.array == 2)
    assert pairs[0].source == {"method": "labels", "label": 1}


def test_missing_label_and_empty_mask_are_clear_errors(hippocampus):
    _, fixed = hippocampus("001")
    _, moving = hippocampus("004")
    with pytest.raises(PromptRegisterError, match="Label 3 is empty in the fixed"):
        RoiPairs.from_label_maps(fixed, moving, [1, 3])
    with pytest.raises(PromptRegisterError, match="moving mask is empty"):
        RoiPairs(fixed.geometry, moving.geometry, [RoiPair(fixed.array == 1, moving.array == 9)])
    with pytest.raises(PromptRegisterError, match="share no label"):
        RoiPairs.from_label_maps(fixed, moving.with_array(np.where(moving.array > 0, 7, 0)))


def test_mask_on_the_wrong_grid_is_refused(hippocampus):
    _, fixed = hippocampus("001")
    with pytest.raises(PromptRegisterError, match="fixed mask has shape"):
        RoiPairs(fixed.geometry, fixed.geometry, [RoiPair(np.ones((3, 3, 3), bool), fixed.array == 1)])


def test_save_and_load_keeps_overlapping_pairs_exactly(tmp_path, hippocampus):
    _, fixed = hippocampus("001")
    _, moving = hippocampus("004")
    whole_fixed, whole_moving = fixed.array > 0, moving.array > 0
    pairs = RoiPairs.from_label_maps(fixed, moving)
    pairs.append(RoiPair(whole_fixed, whole_moving, 0.87, {"method": "samreg", "slice": 31, "prompt": None}, "whole"))
    written = pairs.save(tmp_path)
    sidecar = json.loads(written["pairs"].read_text())
    assert sidecar["files"]["fixed"] == ["fixed_rois.nii.gz", "fixed_rois.layer2.nii.gz"]
    assert sidecar["pairs"][2]["source"] == {"method": "samreg", "slice": 31, "prompt": None}
    loaded = RoiPairs.load(tmp_path)
    assert len(loaded) == 3 and loaded[2].score == pytest.approx(0.87)
    for original, back in zip(pairs, loaded):
        np.testing.assert_array_equal(original.fixed_mask, back.fixed_mask)
        np.testing.assert_array_equal(original.moving_mask, back.moving_mask)
        assert original.name == back.name
    assert loaded.fixed_geometry.is_close(fixed.geometry)
