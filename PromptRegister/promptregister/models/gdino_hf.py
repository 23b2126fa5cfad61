"""GroundingDINO through transformers' `GroundingDinoForObjectDetection`
(works with transformers 4.x and 5.x). Checkpoints: IDEA-Research/grounding-dino-tiny
and -base (Swin-B, the model Tell2Reg used), or any local model folder.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from ..errors import PromptRegisterError
from ..device import resolve_device
from .text import Detections, TextDetector, caption
from .weights import WeightsManager


FOLDER_ADVICE = ("give the folder that holds config.json, model.safetensors and the tokenizer and preprocessor "
                 "files (as `promptregister weights fetch grounding-dino-tiny` writes it); for an original "
                 "GroundingDINO .pth file use --detector groundingdino_swint or groundingdino_swinb with it")
DETECTOR_OPTION = "--detector-checkpoint"
"""The command-line option that takes a local detector folder or file (named in messages)."""


def locate_model(source: str, manager: WeightsManager, verify: bool = True) -> Path:
    """The local model folder for `source` (a folder, or a registry name found in the weights folders or the
    Hugging Face cache), its weights checked against the registry's pin when `verify`; never the network.

    Raises PromptRegisterError naming what is missing, where to put it and how to fetch it.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise PromptRegisterError(f"{path} is not a transformers GroundingDINO model folder (it is a file); "
                                  f"{FOLDER_ADVICE}")
    entry = manager.registry.get(source)
    if entry is None or not entry.is_folder:
        known = ", ".join(sorted(name for name, c in manager.registry.items() if c.is_folder))
        raise PromptRegisterError(f"GroundingDINO model {source!r} is neither a folder here nor a known detector "
                                  f"({known}); pass a local model folder ({DETECTOR_OPTION} on the command line), "
                                  "or use a known name and fetch it with `promptregister weights fetch NAME`")
    found = manager.find(source)
    if found is not None:
        if verify:
            manager.verify(entry, found)
        return found
    from .hub import cached_snapshot, fetch_folder

    cached = cached_snapshot(manager, entry)
    if cached is not None:
        return cached
    if manager.allow_download:
        return fetch_folder(manager, entry)
    raise PromptRegisterError(manager.missing_message(entry, option=DETECTOR_OPTION))


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
        """Load from a local model folder or a registry name (looked up in the weights folders and the Hugging Face
        cache, its weights checked against the pinned SHA-256).

        Never downloads unless `manager` allows downloads (the default manager does not): a missing model is a
        PromptRegisterError at once that says where to put it and which command fetches it. transformers is
        only ever given a local folder, with local_files_only=True, so it cannot wait on the network.
        """
        try:
            from transformers import AutoProcessor, GroundingDinoForObjectDetection
        except ImportError:
            raise PromptRegisterError(
                "transformers is not installed; install the text extra: pip install 'promptregister[text]'"
            ) from None
        manager = manager or WeightsManager(allow_download=False)
        folder = locate_model(source, manager)
        try:
            processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
            model = GroundingDinoForObjectDetection.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise PromptRegisterError(f"{folder} is not a transformers GroundingDINO model folder ({first}); "
                                      f"{FOLDER_ADVICE}") from None
        name = source if source in manager.registry else folder.name
        return cls(model, processor, name=name, device=device)

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
