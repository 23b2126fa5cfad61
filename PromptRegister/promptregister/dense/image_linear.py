"""A linear start from the images themselves, for the image registration (no prompt).

The region pairs' pre-alignment (linear.py) needs pairs; with no prompt the images must give it. ITK's
registration framework (through SimpleITK) optimises a rigid or affine map, coarse to fine, on a similarity
suited to the modalities: global correlation for one modality (the dense stage's local correlation then takes
over), Mattes mutual information between modalities. The result is kept only when it makes the images agree
more than the identity does: a volume pair that is already aligned stays where it is.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import PromptRegisterError
from ..options.fit import LINEAR_MODELS
from ..volume import Volume
from .linear import LinearFit


SHRINK_FACTORS = (4, 2, 1)
LNCC_RADIUS = 2
"""Neighbourhood radius (voxels of each level) of the local correlation."""
SMOOTHING_MM = (2.0, 1.0, 0.0)


def linear_from_images(fixed: Volume, moving: Volume, model: str = "rigid", metric: str = "lncc",
                       iterations: int = 200) -> LinearFit:
    """The fixed -> moving linear map that best aligns the images (LPS mm).

    Arguments:
        fixed, moving: 3D volumes on any grids.
        model: 'none' (the identity), 'translation', 'rigid' or 'affine'; rigid and affine start from the
            translation found first.
        metric: 'lncc' (one modality: correlation) or 'mind' (between modalities: mutual information).
        iterations: optimiser iterations per resolution level.
    Returns:
        LinearFit; its note says what was found, or why the identity was kept.
    """
    if model not in LINEAR_MODELS:
        raise PromptRegisterError(f"the image registration's linear model must be one of "
                                  f"{', '.join(LINEAR_MODELS)}; got {model!r}")
    if model == "none":
        return LinearFit(np.eye(3), np.zeros(3), "none", "identity (no linear start asked for)")
    fixed_image, moving_image = _as_float(fixed), _as_float(moving)
    centre = np.asarray(fixed_image.TransformContinuousIndexToPhysicalPoint(
        [(n - 1) / 2.0 for n in fixed_image.GetSize()]))
    transform: sitk.Transform = sitk.TranslationTransform(3)
    before = _metric_value(fixed_image, moving_image, sitk.TranslationTransform(3), metric)
    _optimise(fixed_image, moving_image, transform, metric, iterations)
    if model in ("rigid", "affine"):
        translation = np.asarray(transform.GetOffset())
        rigid = sitk.Euler3DTransform()
        rigid.SetCenter(centre.tolist())
        rigid.SetTranslation(translation.tolist())
        _optimise(fixed_image, moving_image, rigid, metric, iterations)
        transform = rigid
        if model == "affine":
            affine = sitk.AffineTransform(3)
            affine.SetCenter(centre.tolist())
            affine.SetMatrix(rigid.GetMatrix())
            affine.SetTranslation(rigid.GetTranslation())
            _optimise(fixed_image, moving_image, affine, metric, iterations)
            transform = affine
    after = _metric_value(fixed_image, moving_image, transform, metric)
    matrix, translation = _matrix_and_translation(transform)
    if not after < before or not _plausible(matrix):
        return LinearFit(np.eye(3), np.zeros(3), "none",
                         f"identity: the {model} map from the images did not make them agree more "
                         f"({metric} metric {before:.4f} -> {after:.4f})")
    return LinearFit(matrix, translation, model, f"{model} from the images (metric {before:.4f} -> {after:.4f})")


def _as_float(volume: Volume) -> sitk.Image:
    return sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)


def _method(metric: str) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    if metric == "mind":
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    elif metric == "global":
        method.SetMetricAsCorrelation()
    else:  # local correlation, as the dense stage's image term (robust to intensity inhomogeneity)
        method.SetMetricAsANTSNeighborhoodCorrelation(radius=LNCC_RADIUS)
    method.SetMetricSamplingStrategy(method.NONE)  # every voxel of each level: deterministic
    method.SetInterpolator(sitk.sitkLinear)
    return method


def _optimise(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, metric: str,
              iterations: int) -> None:
    """Optimise `transform` in place, coarse to fine."""
    method = _method(metric)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=0.01, numberOfIterations=iterations,
                                                    relaxationFactor=0.5, gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    factors = [min(f, max(1, min(fixed.GetSize()) // 8)) for f in SHRINK_FACTORS]
    method.SetShrinkFactorsPerLevel(factors)
    method.SetSmoothingSigmasPerLevel(list(SMOOTHING_MM))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(transform, inPlace=True)
    try:
        method.Execute(fixed, moving)
    except RuntimeError as error:  # e.g. too few overlapping samples: keep what we have
        if "samples" not in str(error).lower() and "overlap" not in str(error).lower():
            raise PromptRegisterError(f"the linear registration of the images failed: {str(error).splitlines()[-1]}"
                                      ) from None


def _metric_value(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, metric: str) -> float:
    """The metric (lower is better) at full resolution; +inf where the images do not overlap."""
    method = _method(metric)
    method.SetInitialTransform(transform, inPlace=False)
    try:
        return float(method.MetricEvaluate(fixed, moving))
    except RuntimeError:
        return float("inf")


def _matrix_and_translation(transform: sitk.Transform) -> Tuple[np.ndarray, np.ndarray]:
    """p_moving = A p_fixed + t of a translation, Euler or affine transform."""
    if isinstance(transform, sitk.TranslationTransform):
        return np.eye(3), np.asarray(transform.GetOffset(), dtype=float)
    matrix = np.asarray(transform.GetMatrix(), dtype=float).reshape(3, 3)
    centre = np.asarray(transform.GetCenter(), dtype=float)
    translation = np.asarray(transform.GetTranslation(), dtype=float)
    return matrix, centre + translation - matrix @ centre


def _plausible(matrix: np.ndarray) -> bool:
    """Scales anatomy could have (the pairs' affine fit has the same bound)."""
    values = np.linalg.svd(matrix, compute_uv=False)
    return bool(values.min() > 0.4 and values.max() < 2.5 and np.linalg.det(matrix) > 0)
