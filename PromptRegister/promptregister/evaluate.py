"""Before/after figures for a transform, from label maps and optional landmarks."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from . import metrics
from .errors import PromptRegisterError
from .io.transforms import transform_to_field
from .volume import Volume
from .warp import warp_volume


def evaluate_registration(
    fixed_labels: Volume,
    moving_labels: Volume,
    transform: sitk.Transform,
    labels: Optional[Sequence[int]] = None,
    fixed_landmarks: Optional[np.ndarray] = None,
    moving_landmarks: Optional[np.ndarray] = None,
) -> Dict[str, object]:
    """Dice, HD95 and centroid distance per label before (identity) and after the transform.

    Returns a dict with 'labels' (one row per label), 'mean', 'jacobian'
    (determinant statistics on the fixed grid) and, with landmarks, 'tre'.
    """
    fixed = fixed_labels.geometry
    if labels is None:
        labels = sorted((set(np.unique(fixed_labels.array)) & set(np.unique(moving_labels.array))) - {0})
    if not labels:
        raise PromptRegisterError("The fixed and moving label maps share no non-zero label to evaluate.")
    before = warp_volume(moving_labels, sitk.Transform(3, sitk.sitkIdentity), fixed, labels=True).array
    after = warp_volume(moving_labels, transform, fixed, labels=True).array
    rows: List[Dict[str, float]] = []
    for label in labels:
        target = fixed_labels.array == label
        row: Dict[str, float] = {"label": int(label)}
        for name, warped in (("before", before), ("after", after)):
            source = warped == label
            row[f"dice_{name}"] = metrics.dice(target, source)
            row[f"hd95_mm_{name}"] = metrics.hausdorff95(target, source, fixed)
            row[f"centroid_mm_{name}"] = metrics.centroid_distance(target, source, fixed) if source.any() else float("nan")
        rows.append(row)
    mean = {key: float(np.nanmean([row[key] for row in rows])) for key in rows[0] if key != "label"}
    result: Dict[str, object] = {"labels": rows, "mean": mean}
    result["jacobian"] = metrics.jacobian_stats(transform_to_field(transform, fixed), fixed)
    if fixed_landmarks is not None and moving_landmarks is not None:
        mapped = np.array([transform.TransformPoint(tuple(map(float, p))) for p in fixed_landmarks])
        tre_after = metrics.target_registration_error(mapped, moving_landmarks)
        tre_before = metrics.target_registration_error(fixed_landmarks, moving_landmarks)
        result["tre"] = {
            "before_mean_mm": float(tre_before.mean()),
            "after_mean_mm": float(tre_after.mean()),
            "after_max_mm": float(tre_after.max()),
            "per_landmark_mm": tre_after.round(3).tolist(),
        }
    return result
