"""Text detectors on tiny GroundingDINO models (both implementations, real classes, tiny local BERT)."""

from __future__ import annotations

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
    with pytest.raises(PromptRegisterError, match="GroundingDINO model 'grounding-dino-base' is not available"):
        build_detector("grounding-dino-base", manager=manager, device="cpu")


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
