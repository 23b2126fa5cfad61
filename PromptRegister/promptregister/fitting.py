"""The dense fit as `register` runs it, around dense.fit_transform: the linear model suited to the number of
pairs, and a refit without the pairs the image contradicts (RegisterOptions.drop_below).

Folding is handled inside the dense stage: the folding penalty (dense/folding.py) during the fit, and the
repair of what still folds afterwards (dense/unfold.py, FitOptions.unfold, on in register's defaults).
(An earlier version refitted with a ten times stronger penalty while the field folded; on the ten benchmark
pairs that lowered two pairs' Dice by 0.16-0.30 and did not always remove the folding, so it was replaced
by the local repair.)
"""

from __future__ import annotations

from dataclasses import replace
from typing import List, Optional, Tuple

import numpy as np

from .dense.fit import FitOptions, FitResult, fit_transform
from .dense.linear import LinearFit
from .methods.consistency import drop_contradicted
from .metrics import dice
from .progress import StageProgress
from .roipairs import RoiPairs
from .volume import Volume
from .warp import warp_volume


MIN_PAIRS_FOR_LINEAR = 10
"""Below this many pairs the pre-alignment is a translation: slice-thin ROIs from a few prompts do not
determine rotation or scale (their corners are coplanar), and a wrong rotation ruins the fit."""

def fit_options_for(pairs: RoiPairs, fit: FitOptions) -> FitOptions:
    """The dense-stage options, with the linear model reduced to a translation for few pairs."""
    if len(pairs) < MIN_PAIRS_FOR_LINEAR and fit.linear in ("rigid", "affine"):
        return replace(fit, linear="translation")
    return fit


def pair_dice(pairs: RoiPairs, fit: FitResult) -> List[float]:
    """Dice of each fixed ROI with its moving ROI warped onto the fixed grid (one warp per label layer)."""
    transform = fit.transform()
    values = [0.0] * len(pairs)
    for layer in pairs.label_layers("moving"):
        warped = warp_volume(Volume(layer, pairs.moving_geometry), transform, pairs.fixed_geometry, labels=True).array
        for label in np.unique(layer):
            if label:
                values[label - 1] = dice(pairs[label - 1].fixed_mask, warped == label)
    return values


def fit_pairs(pairs: RoiPairs, options: FitOptions, images: Tuple[Volume, Volume], *, drop_below: float = 0.0,
              progress: Optional[StageProgress] = None, initial: Optional[np.ndarray] = None,
              linear: Optional[LinearFit] = None) -> Tuple[RoiPairs, FitResult, List[float], List[dict]]:
    """(pairs used, fit, their Dice after it, the dropped ones): the dense fit, and with the image term and
    `drop_below` (RegisterOptions.drop_below), a second fit without the pairs the first one could not honour.
    `initial`: a warm start, `linear`: a given pre-alignment (fit_transform)."""
    fit = fit_transform(pairs, fit_options_for(pairs, options), progress, images=images, initial=initial,
                        linear=linear)
    dice_after = pair_dice(pairs, fit)
    if options.image_weight <= 0 or drop_below <= 0:
        return pairs, fit, dice_after, []
    kept, dropped = drop_contradicted(pairs, dice_after, drop_below)
    if not dropped:
        return pairs, fit, dice_after, []
    # a refit after an image registration starts from it again; otherwise from scratch
    fit = fit_transform(kept, fit_options_for(kept, options), progress, images=images,
                        initial=initial if linear is not None else None, linear=linear)
    return kept, fit, pair_dice(kept, fit), dropped
