"""Do no harm: does the registered moving image agree with the fixed image better than before?

Wrong ROI pairs can pull a well aligned pair apart. After the fit, the image similarity (mean squared
local correlation, as the image term measures it) in the fixed image's foreground near the fixed ROIs (where
the pairs move the image; far from them the field is extrapolated) is compared for the
moving image as it was (the identity: the user's pre-alignment) and as registered. A drop beyond
`tolerance` is reported in the summary, on the command line and in Slicer, so the user knows not to trust
that result. The measure follows the image term's metric: local correlation for the same modality, MIND-SSC
descriptor agreement (1 - mean squared descriptor difference, dense/mind.py) between modalities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .dense.image_term import normalised_intensities
from .dense.mind import mind_ssc
from .volume import Volume
from .warp import warp_volume

AGREEMENT_REGION_MM = 10.0
"""The check looks at the fixed foreground within this distance of a fixed ROI."""

TOLERANCE = 0.01
"""A registered result whose similarity is more than this below the pre-alignment's is called worse."""


def local_correlation(fixed: np.ndarray, moving: np.ndarray, mask: np.ndarray, window_voxels) -> float:
    """Mean over `mask` of the squared local correlation of two arrays on one grid."""
    mean = lambda values: ndimage.uniform_filter(values, window_voxels, mode="nearest")
    mean_f, mean_m = mean(fixed), mean(moving)
    cross = mean(fixed * moving) - mean_f * mean_m
    var_f = np.maximum(mean(fixed * fixed) - mean_f ** 2, 0.0)
    var_m = np.maximum(mean(moving * moving) - mean_m ** 2, 0.0)
    correlation = cross * cross / (var_f * var_m + 1e-4)
    return float(correlation[mask].mean()) if mask.any() else float("nan")


def foreground(volume: Volume) -> np.ndarray:
    """Voxels above the image's Otsu threshold (the body, not the air around it)."""
    image = sitk.GetImageFromArray(normalised_intensities(volume))
    return sitk.GetArrayFromImage(sitk.OtsuThreshold(image, 0, 1)).astype(bool)


MEASURES = {"lncc": "mean squared local correlation", "mind": "MIND-SSC descriptor agreement"}


def descriptor_agreement(fixed: np.ndarray, moving: np.ndarray, mask: np.ndarray, spacing_kji, distance_mm: float) -> float:
    """1 - mean over `mask` of the mean squared difference of the two arrays' MIND-SSC descriptors."""
    difference = ((mind_ssc(fixed, spacing_kji, distance_mm) - mind_ssc(moving, spacing_kji, distance_mm)) ** 2).mean(0)
    return float(1.0 - difference[mask].mean()) if mask.any() else float("nan")


@dataclass(frozen=True)
class ImageAgreement:
    before: float
    after: float
    tolerance: float = TOLERANCE
    metric: str = "lncc"

    @property
    def worse(self) -> bool:
        return self.after < self.before - self.tolerance

    def summary(self) -> Dict[str, object]:
        return {"measure": f"{MEASURES[self.metric]} in the fixed foreground", "before": round(self.before, 4),
                "after": round(self.after, 4), "worse": self.worse}

    def warning(self) -> str:
        """One sentence for the user, or '' when the result is not worse."""
        if not self.worse:
            return ""
        return (f"the registered image agrees with the fixed image less than before ({MEASURES[self.metric]} "
                f"{self.after:.3f} after, {self.before:.3f} before): some region pairs are probably wrong; "
                f"check the result, or add prompts")


def near(masks: np.ndarray, geometry, distance_mm: float) -> np.ndarray:
    """Voxels within `distance_mm` of any of the (n, k, j, i) masks: where the ROI pairs move the image."""
    union = np.any(masks, axis=0)
    return ndimage.distance_transform_edt(~union, sampling=geometry.spacing[::-1]) <= distance_mm


def image_agreement(fixed: Volume, moving: Volume, transform: sitk.Transform, window_mm: float = 9.0,
                    region: Optional[np.ndarray] = None, metric: str = "lncc") -> ImageAgreement:
    """Similarity of the fixed image and the moving one resampled onto its grid, before and after, in the
    fixed foreground (within `region` when given); `metric` as the image term's (FitOptions.image_metric)."""
    values = normalised_intensities(fixed)
    mask = foreground(fixed)
    if region is not None:  # near the ROIs; where none of that is foreground (dark structures), all of it
        mask = mask & region if (mask & region).any() else region
    window = [max(3, 2 * int(round(window_mm / s / 2)) + 1) for s in fixed.geometry.spacing[::-1]]

    def similarity(mapping: sitk.Transform) -> float:
        resampled = normalised_intensities(warp_volume(moving, mapping, fixed.geometry))
        if metric == "mind":  # neighbours about 2 mm apart: structure, not speckle
            spacing = fixed.geometry.spacing[::-1]
            return descriptor_agreement(values, resampled, mask, spacing, max(2.0, min(spacing)))
        return local_correlation(values, resampled, mask, window)

    return ImageAgreement(similarity(sitk.Transform(3, sitk.sitkIdentity)), similarity(transform), metric=metric)
