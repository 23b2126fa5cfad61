"""Layer 6: segmenters (SAM family, classical) and text detectors (GroundingDINO).

`build_segmenter("vit_b")` etc. resolve verified weights through the
`WeightsManager`; a model whose weights cannot be had is an error, never a
silent switch to another model.
"""

from __future__ import annotations

from typing import Optional

from .base import (EverythingMasks, EverythingOptions, MaskPrediction, Segmenter,  # noqa: F401
                   SliceEmbedding)
from .cache import EmbeddingCache  # noqa: F401
from .grid import EmbeddingGrid  # noqa: F401
from .text import Detections, TextDetector  # noqa: F401
from .weights import Checkpoint, WeightsManager  # noqa: F401

__all__ = ["Checkpoint", "Detections", "EmbeddingCache", "EmbeddingGrid", "EverythingMasks", "EverythingOptions",
           "MaskPrediction", "Segmenter", "SliceEmbedding", "TextDetector", "WeightsManager", "build_detector",
           "build_segmenter", "resolve_model", "SEGMENTER_CHOICES", "DETECTOR_CHOICES"]

SEGMENTER_CHECKPOINTS = {
    "vit_h": "sam_vit_h",
    "vit_l": "sam_vit_l",
    "vit_b": "sam_vit_b",
    "medsam": "medsam_vit_b",
    "mobilesam": "mobile_sam",
}
SEGMENTER_CHOICES = tuple(SEGMENTER_CHECKPOINTS) + ("classical", "custom")
DETECTOR_CHOICES = ("grounding-dino-base", "grounding-dino-tiny", "groundingdino_swinb", "groundingdino_swint")


def resolve_model(model: str, checkpoint_path=None) -> str:
    """The concrete model for a user's choice: `auto` = the given checkpoint file ("custom", which recognises
    and verifies known releases), else vit_b when its weights are on disk, else the classical backend."""
    if model != "auto":
        return model
    if checkpoint_path:
        return "custom"
    return "vit_b" if WeightsManager(allow_download=False).find("sam_vit_b") is not None else "classical"


def build_segmenter(model: str = "vit_b", *, checkpoint_path=None, manager: Optional[WeightsManager] = None,
                    device: str = "auto", cache: Optional[EmbeddingCache] = None, batch_size: int = 4,
                    download_progress=None) -> Segmenter:
    """A segmenter by user-facing model name (see SEGMENTER_CHOICES) or any SAM-family registry name."""
    from ..errors import PromptRegisterError

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


def build_detector(name: str = "grounding-dino-base", *, checkpoint_path=None,
                   manager: Optional[WeightsManager] = None, device: str = "auto") -> TextDetector:
    """A text detector: a transformers model (hub id, folder or registry name) or an original .pth checkpoint."""
    manager = manager or WeightsManager()
    if name in manager.registry and manager.get(name).family == "groundingdino":
        from .gdino_original import OriginalGroundingDino

        return OriginalGroundingDino.from_checkpoint(name, manager, checkpoint_path, device=device)
    from .gdino_hf import HFGroundingDino

    return HFGroundingDino.from_pretrained(str(checkpoint_path or name), manager, device=device)
