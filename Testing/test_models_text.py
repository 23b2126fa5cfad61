"""Text detectors on tiny GroundingDINO models (both implementations, real classes, tiny local BERT)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from promptregister import PromptRegisterError
from promptregister.models import build_detector
from promptregister.models.gdino_hf import HFGroundingDino
from promptregister.models.gdino_original import OriginalGroundingDino, config_path
from promptregister.models.text import caption, clean_phrases
from promptregister.models.weights import Checkpoint, WeightsManager, sha256_of
from tiny_models import save_tiny_bert, save_tiny_hf_grounding_dino, tiny_original_gdino_overrides

SLICE = (np.random.default_rng(0).random((90, 140, 3)) * 255).astype(np.uint8)


def test_phrases_are_cleaned_and_an_empty_prompt_is_refused():
    assert clean_phrases("Prostate,  bladder . ") == ["prostate", "bladder"]
    assert caption(["prostate", "Bladder neck"]) == "prostate . bladder neck ."
    with pytest.raises(PromptRegisterError, match="text prompt is empty"):
        clean_phrases(" , . ")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    return save_tiny_hf_grounding_dino(tmp_path_factory.mktemp("hf"))


def test_transformers_detector_boxes_are_in_the_slice_pixel_frame(hf_folder):
    detector = HFGroundingDino.from_pretrained(str(hf_folder), device="cpu")
    found = detector.detect(SLICE, ["prostate", "bladder"], box_threshold=0.0, text_threshold=0.0)
    assert len(found) == 20  # every query passes a zero threshold
    # the same boxes computed by hand from the raw model output (cx, cy, w, h relative to the image)
    inputs = detector.processor(images=SLICE, text="prostate . bladder .", return_tensors="pt")
    with torch.no_grad():
        raw = detector.model(**inputs).pred_boxes[0].numpy()
    cx, cy, w, h = raw.T
    expected = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1) * [140, 90, 140, 90]
    expected[:, [0, 2]] = expected[:, [0, 2]].clip(0, 140)
    expected[:, [1, 3]] = expected[:, [1, 3]].clip(0, 90)
    order = np.argsort(expected[:, 0])
    np.testing.assert_allclose(found.boxes[np.argsort(found.boxes[:, 0])], expected[order], atol=1e-3)
    assert set(" ".join(found.phrases).split()) <= {"prostate", "bladder"}
    strict = detector.detect(SLICE, "prostate", box_threshold=1.0, text_threshold=0.25)
    assert len(strict) == 0
    with pytest.raises(PromptRegisterError, match="box_threshold must lie in"):
        detector.detect(SLICE, "prostate", box_threshold=1.5)


def test_missing_transformers_model_is_a_clear_error(tmp_path):
    manager = WeightsManager(weights_dir=tmp_path, cache_dir=tmp_path / "cache", allow_download=False)
    with pytest.raises(PromptRegisterError, match="model grounding-dino-base .* is not available") as caught:
        build_detector("grounding-dino-base", manager=manager, device="cpu")
    assert str(tmp_path / "cache" / "grounding-dino-base") in str(caught.value)  # where to put it
    assert "promptregister weights fetch grounding-dino-base" in str(caught.value)  # or how to fetch it


def test_a_registry_detector_folder_is_checked_against_its_pin(hf_folder, tmp_path):
    """A folder found under a registry name must hold the pinned weights: the tiny model put where
    grounding-dino-tiny belongs is refused by its size, never loaded as if it were the real one."""
    shutil.copytree(hf_folder, tmp_path / "grounding-dino-tiny")
    manager = WeightsManager(weights_dir=tmp_path, cache_dir=tmp_path / "cache", allow_download=False)
    with pytest.raises(PromptRegisterError, match="is not the grounding-dino-tiny checkpoint .*689359096 bytes"):
        build_detector("grounding-dino-tiny", manager=manager, device="cpu")


def test_a_pinned_detector_folder_loads_and_a_tampered_one_is_refused(hf_folder, tmp_path):
    """A registry entry pinned to the tiny model's weights loads through the same path as the real models; one
    flipped byte in the weights is refused."""
    weights = hf_folder / "model.safetensors"
    entry = Checkpoint("tiny-gdino", "test-org/tiny-gdino", "hf-groundingdino", "tiny-gdino",
                       "https://example.invalid/tiny-gdino", sha256_of(weights), weights.stat().st_size, "test",
                       revision="0" * 40, weight_file="model.safetensors")
    shutil.copytree(hf_folder, tmp_path / "good" / "tiny-gdino")
    manager = WeightsManager(weights_dir=tmp_path / "good", cache_dir=tmp_path / "cache", allow_download=False)
    manager.add(entry)
    assert build_detector("tiny-gdino", manager=manager, device="cpu").name == "tiny-gdino"
    tampered = tmp_path / "bad" / "tiny-gdino"
    shutil.copytree(hf_folder, tampered)
    data = bytearray((tampered / "model.safetensors").read_bytes())
    data[-10] ^= 0x01
    (tampered / "model.safetensors").write_bytes(bytes(data))
    manager = WeightsManager(weights_dir=tmp_path / "bad", cache_dir=tmp_path / "cache", allow_download=False)
    manager.add(entry)
    with pytest.raises(PromptRegisterError, match="refusing .*model.safetensors"):
        build_detector("tiny-gdino", manager=manager, device="cpu")


@pytest.fixture(scope="module")
def original_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gdino")
    bert = save_tiny_bert(folder / "bert")
    overrides = tiny_original_gdino_overrides(bert)
    torch.manual_seed(0)
    model = OriginalGroundingDino.from_config(config_path("swint"), None, device="cpu", **overrides).model
    path = folder / "tiny_gdino.pth"
    torch.save({"model": model.state_dict()}, path)
    entry = Checkpoint("tiny_gdino", "swint", "groundingdino", path.name, "https://example.invalid/tiny_gdino.pth",
                       sha256_of(path), path.stat().st_size, "test")
    return folder, entry, overrides, model


def test_original_detector_loads_verified_weights_and_returns_pixel_boxes(original_checkpoint):
    folder, entry, overrides, reference = original_checkpoint
    manager = WeightsManager(weights_dir=folder, allow_download=False)
    manager.add(entry)
    detector = OriginalGroundingDino.from_checkpoint("tiny_gdino", manager, device="cpu", **overrides)
    state = detector.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in reference.state_dict().items())
    found = detector.detect(SLICE, "prostate, bladder", box_threshold=0.0, text_threshold=0.0)
    assert len(found) == 20
    assert found.boxes[:, [0, 2]].min() >= 0 and found.boxes[:, [0, 2]].max() <= 140
    assert found.boxes[:, [1, 3]].min() >= 0 and found.boxes[:, [1, 3]].max() <= 90
    assert (found.boxes[:, 2] >= found.boxes[:, 0]).all() and (found.boxes[:, 3] >= found.boxes[:, 1]).all()
    assert found.boxes[:, 2].max() > 70  # boxes spread over the whole 140-pixel width, not a 0-1 frame
    assert found.scores.min() >= 0 and found.scores.max() <= 1


def test_original_detector_refuses_a_tampered_checkpoint(original_checkpoint, tmp_path):
    folder, entry, overrides, _ = original_checkpoint
    data = bytearray((folder / entry.file_name).read_bytes())
    data[-100] ^= 0x01
    (tmp_path / entry.file_name).write_bytes(bytes(data))
    manager = WeightsManager(weights_dir=tmp_path, allow_download=False)
    manager.add(entry)
    with pytest.raises(PromptRegisterError, match="refusing"):
        OriginalGroundingDino.from_checkpoint("tiny_gdino", manager, device="cpu", **overrides)
