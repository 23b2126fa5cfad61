"""Dense stage: ROI pairs -> linear pre-alignment -> smooth displacement field."""

from .fit import FitOptions, FitResult, fit_transform  # noqa: F401
from .linear import LinearFit, fit_linear  # noqa: F401
