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
from .device import resolve_device
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
        try:
            processor = AutoProcessor.from_pretrained(location, local_files_only=local_only)
            model = GroundingDinoForObjectDetection.from_pretrained(location, local_files_only=local_only)
        except (OSError, ValueError) as error:
            raise PromptRegisterError(
                f"GroundingDINO model {source!r} is not available ({str(error).splitlines()[0]}). Put the model "
                f"folder (config.json, model.safetensors, tokenizer and preprocessor files) in "
                f"{os.environ.get('PROMPTREGISTER_WEIGHTS_DIR', manager.cache_dir)} or pass its path; downloads "
                f"{'are off' if local_only else 'failed'}."
            ) from None
        return cls(model, processor, name=Path(location).name, device=device)

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
        labels = result.get("text_labels", result.get("labels", []))
        return Detections(result["boxes"].float().cpu().numpy(), result["scores"].float().cpu().numpy(),
                          [str(label) for label in labels])
