"""PromptRegister engine: prompt-driven, training-free image registration.

The engine never imports Slicer. Physical space is ITK's LPS in millimetres;
a displacement field lives on the fixed grid and maps a fixed point p to the
moving point p + u(p) (ITK's resampling convention).
"""

__version__ = "0.1.0"

from .errors import PromptRegisterError  # noqa: F401
from .geometry import Geometry  # noqa: F401
from .volume import Volume  # noqa: F401
