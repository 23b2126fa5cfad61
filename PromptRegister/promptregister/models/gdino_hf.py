"""GroundingDINO through transformers' `GroundingDinoForObjectDetection`
(works with transformers 4.x and 5.x). Checkpoints: IDEA-Research/grounding-dino-tiny
and -base (Swin-B, the model Tell2Reg used), or any local model folder.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from ..errors import PromptRegisterError
from ..device import resolve_device
from .text import Detections, TextDetector, caption
from .weights import WeightsManager, _offline


class HFGroundingDino(TextDetector):
    """Text detector on a transformers GroundingDINO model and its processor.

    Arguments:
        model: a `GroundingDinoForObjectDetection`.
        processor: the matching `GroundingDinoProcessor`.
        name: shown to users.
        device: "auto", "cuda", "mps" or "cpu".
    """

    def __init__(self, model, processor, name: str = "grounding-dino", device: str = "auto"):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.name = name
        parameters = inspect.signature(processor.post_process_grounded_object_detection).parameters
        self._box_keyword = "threshold" if "threshold" in parameters else "box_threshold"

    @classmethod
    def from_pretrained(cls, source: str = "grounding-dino-base", manager: Optional[WeightsManager] = None,
                        device: str = "auto") -> "HFGroundingDino":
        """Load from a local folder, a registry name (looked up in the weights folders) or a hub id.

        Downloads from the Hugging Face hub only when downloads are allowed.
        """
        try:
            from transformers import AutoProcessor, GroundingDinoForObjectDetection
        except ImportError:
            raise PromptRegisterError(
                "transformers is not installed; install the text extra: pip install 'promptregister[text]'"
            ) from None
        manager = manager or WeightsManager()
        location = source
        if not Path(source).expanduser().is_dir() and source in manager.registry:
            entry = manager.get(source)
            found = manager.find(source)
            location = str(found) if found is not None else entry.architecture
        elif Path(source).expanduser().is_dir():
            location = str(Path(source).expanduser())
        local_only = Path(location).is_dir() or not manager.allow_download or _offline()
        if local_only and not Path(location).is_dir():
            # transformers may still probe the network with local_files_only, so look in the hub cache ourselves
            location = cls._cached_snapshot(location) or location
            if not Path(location).is_dir():
                raise PromptRegisterError(cls._missing(source, manager, "are off"))
        try:
            processor = AutoProcessor.from_pretrained(location, local_files_only=local_only)
            model = GroundingDinoForObjectDetection.from_pretrained(location, local_files_only=local_only)
        except (OSError, ValueError) as error:
            raise PromptRegisterError(
                cls._missing(source, manager, "are off" if local_only else "failed")
                + f" ({str(error).splitlines()[0]})"
            ) from None
        return cls(model, processor, name=Path(location).name, device=device)

    @staticmethod
    def _cached_snapshot(repo_id: str) -> Optional[str]:
        """The folder of a hub model already in the Hugging Face cache, or None."""
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        try:
            found = try_to_load_from_cache(repo_id, "config.json")
        except Exception:  # noqa: BLE001 - an invalid repo id is simply not cached
            return None
        return str(Path(found).parent) if isinstance(found, str) else None

    @staticmethod
    def _missing(source: str, manager: WeightsManager, downloads: str) -> str:
        folder = os.environ.get("PROMPTREGISTER_WEIGHTS_DIR") or manager.cache_dir
        return (f"GroundingDINO model {source!r} is not available (downloads {downloads}). Put the model folder "
                f"(config.json, model.safetensors, tokenizer and preprocessor files) in {folder}, pass its path, or "
                f"run `promptregister weights fetch {source}` where downloads are allowed.")

    @torch.no_grad()
    def _detect(self, image: np.ndarray, phrases: List[str], box_threshold: float,
                text_threshold: float) -> Detections:
        text = caption(phrases)
        inputs = self.processor(images=image, text=text, return_tensors="pt").to(self.device)
        outputs = self.model(**inputs)
        height, width = image.shape[:2]
        kwargs = {self._box_keyword: box_threshold, "text_threshold": text_threshold,
                  "target_sizes": [(height, width)]}
        result = self.processor.post_process_grounded_object_detection(outputs, inputs["input_ids"], **kwargs)[0]
        # transformers >= 4.51 names the phrases text_labels (reading "labels" there warns); older: labels
        labels = result["text_labels"] if "text_labels" in result else result.get("labels", [])
        return Detections(result["boxes"].float().cpu().numpy(), result["scores"].float().cpu().numpy(),
                          [str(label) for label in labels])
