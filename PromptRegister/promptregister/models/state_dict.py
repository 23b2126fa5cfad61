"""Reading a checkpoint's tensors safely, and saying plainly what a file is when it is not a checkpoint.

`torch.load(..., weights_only=True)` never runs pickled code, but on a file that is not a checkpoint it fails
in many ways (a KeyError on a text file, a RuntimeError on a zip archive, an UnpicklingError on random bytes).
A user who gives the wrong file gets one line: what the file is, and what to give instead.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Optional

from ..errors import PromptRegisterError

GENERIC_ADVICE = "give a PyTorch checkpoint (.pth / .pt) saved with torch.save"


def describe_file(path: Path) -> Optional[str]:
    """What a file that torch.load cannot read looks like (text, an archive, ONNX, ...), or None."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if not head:
        return "the file is empty"
    if zipfile.is_zipfile(path):
        return "a zip archive that holds no PyTorch checkpoint"
    if head[:2] == b"\x1f\x8b":
        return "a gzip-compressed file"
    if head[:6] == b"\x93NUMPY":
        return "a NumPy .npy array"
    if path.suffix.lower() == ".onnx":
        return "an ONNX model"
    if b"\x00" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            return None
        start = " ".join(text.split())[:40]
        return f"a text file, starting {start!r}"
    return None


def _unsupported_global(error: BaseException) -> Optional[str]:
    """The Python object a weights-only load refused (`GLOBAL module.Name`), or None for a file that is simply
    not a pickle torch can read."""
    for line in str(error).splitlines():
        if "Unsupported global" in line and "GLOBAL " in line:
            return line.split("GLOBAL ", 1)[1].split()[0]
    return None


def load_state_dict(path: Path, kind: str = "PyTorch", advice: str = GENERIC_ADVICE) -> dict:
    """Load a checkpoint's tensors without executing any pickled code.

    Accepts a plain state dict or one nested under "model" / "state_dict" (GroundingDINO's and many fine-tuning
    scripts' layout).

    Arguments:
        path: the checkpoint file.
        kind: what the caller expects ("segment-anything ViT", "GroundingDINO"), for the message.
        advice: what the user should give instead, ending the message.

    Raises:
        PromptRegisterError: `<path> is not a <kind> checkpoint (<what it is>); <advice>`, on one line.
    """
    import pickle

    import torch

    path = Path(path)

    def refuse(why: str) -> PromptRegisterError:
        return PromptRegisterError(f"{path} is not a {kind} checkpoint ({why}); {advice}")

    if path.is_dir():
        raise refuse("it is a folder")
    if not path.is_file():
        raise PromptRegisterError(f"checkpoint file {path} does not exist")
    described = describe_file(path)
    if described == "the file is empty":
        raise refuse(described)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except pickle.UnpicklingError as error:
        refused = _unsupported_global(error)
        if refused is not None:
            raise refuse(f"besides tensors it holds pickled Python objects ({refused}) that would run code to "
                         "load, so it was not loaded") from None
        raise refuse(described or "it is no file torch.load can read") from None
    except Exception as error:  # noqa: BLE001 - torch.load fails with KeyError, RuntimeError, EOFError, ... on junk
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise refuse(described or f"torch.load cannot read it: {detail}") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise refuse(f"it holds a {type(state).__name__}, not a dictionary of tensors")
    if not any(isinstance(value, torch.Tensor) for value in state.values()):
        raise refuse("it holds no tensors")
    return state
