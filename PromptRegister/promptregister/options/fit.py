"""The dense stage's settings (defaults chosen by bench/sweep_dense.py and bench/sweep_register.py).

Light on purpose (no torch): the Slicer panel and the command line's argument parser read these classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PromptRegisterError
from .checks import require_finite_numbers

LINEAR_MODELS = ("none", "translation", "rigid", "affine")
"""Linear pre-alignment models: of the pairs (FitOptions.linear) and of the images (RegisterOptions.image_linear)."""

IMAGE_METRICS = ("lncc", "mind")
"""FitOptions.image_metric values: local correlation (one modality) and MIND-SSC (between modalities)."""

WEIGHTINGS = ("equal", "score", "confidence")
"""FitOptions.weighting values: how much each ROI pair counts in the fit (dense/fit.py pair_weights)."""


@dataclass
class FitOptions:
    """Settings of the dense stage (defaults chosen by bench/sweep_dense.py; see docs/dense-sweep.md).

    Attributes:
        linear: pre-alignment model: 'none', 'translation', 'rigid' or 'affine'.
        nonrigid: optimise the B-spline field after the linear pre-alignment.
        grid_spacing_mm: distance between B-spline control points.
        smoothness: weight of the regulariser, which is the integral of the squared
            field gradient (or bending) over the whole image divided by the volume
            of the fixed ROIs, so the balance does not change with the image extent.
        regulariser: 'gradient' (L2 of the field's spatial gradient) or 'bending'.
        levels: resolution levels, each twice as fine as the one before.
        max_iterations: cap per level; the convergence rule usually stops earlier.
        min_iterations: iterations per level before convergence is tested.
        tolerance: stop a level when a window of iterations improves the loss by
            less than this fraction.
        window: iterations per convergence window.
        learning_rate_mm: Adam step for control-point displacements, in mm.
        margin_mm: the loss is evaluated on the fixed ROIs' bounding box grown by this.
        band_mm: at the finest level the loss looks only at points this close to a
            fixed ROI's boundary (twice as far at each coarser level); deeper points
            are taken as overlapping. Bounds the work by ROI surface, not volume.
        max_eval_voxels: at the finest level, pool the crop so it has at most this many voxels.
        weighting: 'equal' (every pair counts the same, whatever its size), 'score' (by the pair's score) or
            'confidence' (agreement / number of pairs, where the agreement is that of PromptReg's marginalised
            copies, source["agreement"] in 0..1, and 1 for pairs without one: unsure pairs count less, and
            so do the ROI terms as a whole beside the image term).
        roi_weight: weight of the ROI terms (1); 0 leaves the image term alone, a baseline that shows what the
            ROI pairs add (bench/sweep_register.py --fit roi_weight=0,1).
        image_weight: weight of the image term (image_term.py) beside the ROI terms; 0 fits the ROI pairs
            alone, as the papers do (the "paper" preset). Needs the images (fit_transform's `images`).
        image_metric: 'lncc' (1 - mean local correlation: same modality, MR to MR, CT to CT) or 'mind'
            (MIND-SSC descriptors, mind.py: between modalities, MR to ultrasound, CT to MR).
        image_region: where the image term counts: 'image' (the whole fixed image) or 'rois' (the fixed
            ROIs' bounding box grown by margin_mm).
        image_window_mm: LNCC window width.
        max_image_voxels: the image term's grid is pooled to at most this many voxels.
        folding_weight: weight of the folding penalty (folding.py); 0 turns it off.
        unfold: after the fit, repair the voxels whose Jacobian determinant is still at or below
            unfold.MIN_DETERMINANT (0.05), so the transform never folds. Off here (the papers' fit); register
            turns it on.
        focus_gain: the image term counts (1 + focus_gain) times as much within focus_mm of the pairs' fixed ROIs
            as elsewhere: prompts say where the alignment matters, and the images say how. 0 (default) is off.
        focus_mm: see focus_gain.
        regulariser_volume_mm3: the volume the regulariser is divided by; 0 (the default) takes the fixed ROIs'
            volume (the image's with no pairs). The image registration and the prompts that refine it set one
            value, so that adding or removing a pair does not change the field's stiffness everywhere else.
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        seed: seeds torch, for bit-identical runs on CPU (at one thread count:
            PROMPTREGISTER_THREAD_POLICY=off, threads.py).
    """

    linear: str = "affine"
    nonrigid: bool = True
    grid_spacing_mm: float = 3.0
    smoothness: float = 0.05
    regulariser: str = "gradient"
    levels: int = 3
    max_iterations: int = 300
    min_iterations: int = 30
    tolerance: float = 2e-3
    window: int = 10
    learning_rate_mm: float = 1.0
    margin_mm: float = 15.0
    band_mm: float = 5.0
    max_eval_voxels: int = 1_000_000
    weighting: str = "equal"
    roi_weight: float = 1.0
    image_weight: float = 0.0
    image_metric: str = "lncc"
    image_region: str = "image"
    image_window_mm: float = 9.0
    max_image_voxels: int = 60_000
    folding_weight: float = 0.0
    unfold: bool = False
    regulariser_volume_mm3: float = 0.0
    focus_gain: float = 0.0
    focus_mm: float = 10.0
    device: str = "auto"
    seed: int = 0

    def validate(self) -> None:
        require_finite_numbers(self)
        if self.linear not in LINEAR_MODELS:
            raise PromptRegisterError(f"linear must be one of {', '.join(LINEAR_MODELS)}; got {self.linear!r}.")
        if self.regulariser not in ("gradient", "bending"):
            raise PromptRegisterError(f"regulariser must be 'gradient' or 'bending'; got {self.regulariser!r}.")
        if self.image_metric not in IMAGE_METRICS:
            raise PromptRegisterError(f"image_metric must be 'lncc' (same modality) or 'mind' (between modalities); "
                                      f"got {self.image_metric!r}.")
        if self.image_region not in ("image", "rois"):
            raise PromptRegisterError(f"image_region must be 'image' or 'rois'; got {self.image_region!r}.")
        if self.image_weight < 0 or self.folding_weight < 0 or self.roi_weight < 0:
            raise PromptRegisterError("roi_weight, image_weight and folding_weight must not be negative.")
        if self.roi_weight == 0 and self.image_weight == 0:
            raise PromptRegisterError("roi_weight and image_weight are both 0: nothing would drive the fit.")
        if self.weighting not in WEIGHTINGS:
            raise PromptRegisterError(f"weighting must be one of {', '.join(WEIGHTINGS)}; got {self.weighting!r}.")
        if self.focus_gain < 0 or self.focus_mm < 0:
            raise PromptRegisterError("focus_gain and focus_mm must not be negative.")
        for name in ("grid_spacing_mm", "learning_rate_mm", "max_eval_voxels", "levels", "window",
                     "image_window_mm", "max_image_voxels"):
            if not getattr(self, name) > 0:
                raise PromptRegisterError(f"{name} must be positive; got {getattr(self, name)}.")
        if self.smoothness < 0 or self.margin_mm < 0 or self.max_iterations < 0 or self.regulariser_volume_mm3 < 0:
            raise PromptRegisterError("smoothness, margin_mm, max_iterations and regulariser_volume_mm3 must not be "
                                      "negative.")
