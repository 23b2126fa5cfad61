"""GroundingDINO through the original `groundingdino-py` package and its .pth
checkpoints (Swin-T OGC, Swin-B COGCOOR). Optional extra `gdino-original`,
which pins transformers < 5 (the package's BERT wrapper breaks on 5.x).

The package's own `load_model` unpickles checkpoints without `weights_only`;
here the model is built from its config and the tensors are loaded through
`state_dict.load_state_dict` (weights_only=True) after the SHA-256 check.
Image preprocessing and phrase decoding follow the package's inference code
(resize short side to 800, long side at most 1333, ImageNet normalisation).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from ..errors import PromptRegisterError
from ..device import resolve_device
from .text import Detections, TextDetector, caption
from .state_dict import load_state_dict
from .weights import WeightsManager

CONFIGS = {"swint": "GroundingDINO_SwinT_OGC.py", "swinb": "GroundingDINO_SwinB_cfg.py"}


def _package():
    try:
        from groundingdino.models import build_model
        from groundingdino.util.slconfig import SLConfig
    except ImportError as error:
        raise PromptRegisterError(
            "the original GroundingDINO package is not usable here "
            f"({error}); install the extra: pip install 'promptregister[gdino-original]'"
        ) from None
    return build_model, SLConfig


def config_path(architecture: str) -> Path:
    """The package's config file for 'swint' or 'swinb'."""
    import groundingdino

    if architecture not in CONFIGS:
        raise PromptRegisterError(f"unknown GroundingDINO architecture {architecture!r}; use swint or swinb")
    return Path(groundingdino.__file__).parent / "config" / CONFIGS[architecture]


class OriginalGroundingDino(TextDetector):
    """Text detector on the original GroundingDINO model.

    Arguments:
        model: a built, loaded `groundingdino.models.GroundingDINO`.
        name: shown to users.
        device: "auto", "cuda", "mps" or "cpu".
    """

    def __init__(self, model, name: str = "groundingdino", device: str = "auto"):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.name = name

    @classmethod
    def from_config(cls, config: os.PathLike, checkpoint: Optional[os.PathLike] = None,
                    device: str = "auto", name: str = "groundingdino", **overrides) -> "OriginalGroundingDino":
        """Build from a config file (overrides such as text_encoder_type applied) and load a checkpoint file."""
        build_model, SLConfig = _package()
        args = SLConfig.fromfile(str(config))
        for key, value in overrides.items():
            setattr(args, key, value)
        args.device = str(resolve_device(device))
        model = build_model(args)
        if checkpoint is not None:
            state = load_state_dict(Path(checkpoint), "GroundingDINO", "give the original GroundingDINO "
                                    ".pth (groundingdino_swint_ogc.pth or groundingdino_swinb_cogcoor.pth)")
            state = {key[7:] if key.startswith("module.") else key: value for key, value in state.items()}
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or len(missing) > 0.5 * len(model.state_dict()):
                raise PromptRegisterError(
                    f"{checkpoint} does not fit the GroundingDINO config {Path(config).name}: "
                    f"{len(missing)} missing and {len(unexpected)} unexpected tensors"
                )
        return cls(model, name=name, device=device)

    @classmethod
    def from_checkpoint(cls, name: str = "groundingdino_swinb", manager: Optional[WeightsManager] = None,
                        path=None, device: str = "auto", **overrides) -> "OriginalGroundingDino":
        """Resolve and verify a registry checkpoint, then build it from the package's matching config."""
        manager = manager or WeightsManager()
        entry = manager.get(name)
        if entry.family != "groundingdino":
            raise PromptRegisterError(f"checkpoint {name} is a {entry.family} model, not an original GroundingDINO")
        file = manager.resolve(name, path)
        return cls.from_config(config_path(entry.architecture), file, device=device, name=name, **overrides)

    def _input(self, image: np.ndarray) -> torch.Tensor:
        import groundingdino.datasets.transforms as T
        from PIL import Image

        transform = T.Compose([T.RandomResize([800], max_size=1333), T.ToTensor(),
                               T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        tensor, _ = transform(Image.fromarray(image), None)
        return tensor

    @torch.no_grad()
    def _detect(self, image: np.ndarray, phrases: List[str], box_threshold: float,
                text_threshold: float) -> Detections:
        from groundingdino.util.utils import get_phrases_from_posmap

        text = caption(phrases)
        outputs = self.model(self._input(image)[None].to(self.device), captions=[text])
        probabilities = outputs["pred_logits"].float().cpu().sigmoid()[0]
        boxes = outputs["pred_boxes"].float().cpu()[0]
        keep = probabilities.max(dim=1)[0] > box_threshold
        probabilities, boxes = probabilities[keep], boxes[keep]
        tokenizer = self.model.tokenizer
        tokenized = tokenizer(text)
        found = [get_phrases_from_posmap(p > text_threshold, tokenized, tokenizer).replace(".", "").strip()
                 for p in probabilities]
        height, width = image.shape[:2]
        cx, cy, w, h = boxes.numpy().T
        corners = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1) * [width, height, width, height]
        return Detections(corners, probabilities.max(dim=1)[0].numpy(), found)
