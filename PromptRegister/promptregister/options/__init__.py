"""Every setting of register, in one place: the option classes of each stage, their measured defaults, the
presets and the flat names the command line, the worker's requests, batch manifests and the Slicer panel use.

Light on purpose: it imports no torch, no scikit-image and no model code, so the Slicer panel (a stock Slicer
has none of those) reads its defaults and choices from here rather than keeping copies.
"""

from .fit import IMAGE_METRICS, LINEAR_MODELS, WEIGHTINGS, FitOptions  # noqa: F401
from .methods import (MASK_CHOICES, EverythingOptions, GrowthOptions, PromptRegOptions, SamRegOptions,  # noqa: F401
                      SliceSearch, Tell2RegOptions)
from .flat import FLAT_OPTIONS, FlatOption, flat_default, options_from_flat  # noqa: F401
from .register import PRESETS, RegisterOptions  # noqa: F401
