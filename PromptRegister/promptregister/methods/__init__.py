"""Layer 4: the correspondence methods. Each turns prompts into slice-level
region pairs (`SlicePair`); `register.py` makes them 3D `RoiPairs`."""

from .pairs import SlicePair, deduplicate, to_roi_pairs  # noqa: F401
from .promptreg import PointPrompt, PromptRegOptions, promptreg, sample_prompts  # noqa: F401
from .samreg import SamRegOptions, samreg  # noqa: F401
from .slices import SlicedVolume  # noqa: F401
from .tell2reg import PAPER_PHRASES, Tell2RegOptions, tell2reg  # noqa: F401

__all__ = ["PAPER_PHRASES", "PointPrompt", "PromptRegOptions", "SamRegOptions", "SlicePair", "SlicedVolume",
           "Tell2RegOptions", "deduplicate", "promptreg", "sample_prompts", "samreg", "tell2reg", "to_roi_pairs"]
