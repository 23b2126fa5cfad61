"""A --checkpoint that is not a usable weights file of the expected kind is one `error:` line and exit code 2,
never a traceback: a text file once gave `KeyError: 101` from deep inside torch.load."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pytest
import torch

from promptregister import PromptRegisterError
from promptregister.cli import main
from promptregister.io import read_volume
from promptregister.models.state_dict import load_state_dict


def _text(path: Path) -> None:
    path.write_text("model: sam_vit_b\nthis is a note, not a checkpoint\n")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _zip_without_checkpoint(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights/readme.txt", "not a torch checkpoint")


def _wrong_keys(path: Path) -> None:
    torch.save({"encoder.weight": torch.zeros(4, 4), "decoder.bias": torch.zeros(4)}, path)


def _pickled_objects(path: Path) -> None:
    torch.save({"weight": torch.zeros(2), "saved_by": Path("/somewhere")}, path)


BAD_FILES: Dict[str, Callable[[Path], None]] = {
    "text": _text, "empty": _empty, "zip": _zip_without_checkpoint, "wrong-keys": _wrong_keys,
    "pickled-objects": _pickled_objects,
}
WHY = {"text": "a text file", "empty": "the file is empty", "zip": "a zip archive",
       "wrong-keys": "it has no tensor 'image_encoder.patch_embed.proj.weight'",
       "pickled-objects": "pickled Python objects"}


@pytest.fixture(scope="module")
def pair(hippocampus_paths) -> List[str]:
    """The register arguments common to every case: the sample pair and a click in the middle of the moving
    image."""
    fixed, _ = hippocampus_paths("001")
    moving, _ = hippocampus_paths("004")
    geometry = read_volume(moving).geometry
    centre = geometry.index_to_physical((np.array(geometry.shape[::-1], dtype=float) - 1) / 2)
    return ["--fixed", str(fixed), "--moving", str(moving), f"--point={','.join(f'{c:.2f}' for c in centre)}",
            "--device", "cpu", "--quiet"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_register_with_a_bad_custom_checkpoint_is_one_clean_error(kind, pair, tmp_path, capsys):
    """`register --checkpoint FILE` (model auto -> custom): each wrong file says what it is and what to give."""
    bad = tmp_path / "weights.pth"
    BAD_FILES[kind](bad)
    out = tmp_path / "out"
    assert main(["register", *pair, "--checkpoint", str(bad), "--out-dir", str(out)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {bad} is not a segment-anything ViT checkpoint (")
    assert WHY[kind] in line
    assert "; give a segment-anything ViT checkpoint" in line  # what to do instead
    assert not out.exists() or not any(out.iterdir())


def test_a_known_model_with_a_text_file_names_the_release_it_expected(pair, tmp_path, capsys):
    """`--model medsam --checkpoint notes.txt`: refused by its pinned size before torch.load ever sees it."""
    bad = tmp_path / "medsam_vit_b.pth"
    _text(bad)
    assert main(["register", *pair, "--model", "medsam", "--checkpoint", str(bad),
                 "--out-dir", str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {bad} is not the medsam_vit_b checkpoint (")
    assert "375049145 bytes" in line and "https://github.com/bowang-lab/MedSAM" in line


@pytest.mark.parametrize("kind", ["text", "empty", "zip", "pickled-objects"])
def test_load_state_dict_refuses_each_bad_file_with_the_callers_advice(kind, tmp_path):
    """The loader used by every model family says the expected kind and the caller's advice, on one line."""
    bad = tmp_path / "model.pth"
    BAD_FILES[kind](bad)
    with pytest.raises(PromptRegisterError) as caught:
        load_state_dict(bad, "GroundingDINO", "give the original GroundingDINO .pth")
    message = str(caught.value)
    assert message.startswith(f"{bad} is not a GroundingDINO checkpoint (") and "\n" not in message
    assert WHY[kind] in message and message.endswith("; give the original GroundingDINO .pth")


def test_load_state_dict_still_reads_plain_and_nested_state_dicts(tmp_path):
    """The clean errors do not cost the files it must read: a plain state dict and one under "model"."""
    plain, nested = tmp_path / "plain.pth", tmp_path / "nested.pth"
    tensors = {"a.weight": torch.arange(6.0).reshape(2, 3)}
    torch.save(tensors, plain)
    torch.save({"model": tensors, "epoch": 3}, nested)
    for path in (plain, nested):
        loaded = load_state_dict(path)
        assert loaded.keys() == tensors.keys() and torch.equal(loaded["a.weight"], tensors["a.weight"])
