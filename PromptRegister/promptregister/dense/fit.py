"""ROI pairs -> displacement field on the fixed grid (SAMReg Eq. 10, in millimetres).

The map from fixed to moving space is T(p) = A p + t + v(p): a linear
pre-alignment (A, t) fitted on the pairs, plus a cubic B-spline field v
optimised with PyTorch so that every warped moving ROI overlaps its fixed
partner: loss = mean over pairs of (soft Dice loss + size-normalised MSE)
+ smoothness * (L2 of the field gradient, or bending energy), optionally
+ image_weight * (1 - LNCC, or MIND-SSC distance, of the images: image_term.py) and + folding_weight
* (a penalty on Jacobian determinants below 0.1, folding.py); with options.unfold the few voxels that still
fold afterwards are repaired (unfold.py), so the field never folds. Optimisation
runs coarse to fine on a crop around the fixed ROIs and stops when the loss
stops improving. Everything is in LPS mm, so spacing and direction matrices
are honoured exactly.
"""

from __future__ import annotations

import math
import time
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..device import resolve_device
from ..errors import PromptRegisterError
from ..geometry import Geometry
from ..progress import StageProgress
from ..roipairs import RoiPairs
from ..threads import ThreadBudget
from ..volume import Volume
from .bspline import BSplineGrid
from .folding import FoldingPenalty
from .image_term import ImageLevel, build_level
from .band import Band, bounding_box, converged, pool, pool_factor, smoothing_widths
from .linear import LinearFit, fit_linear
from ..options.fit import FitOptions
from .result import FitResult, LevelReport  # noqa: F401  (FitResult is imported from here too)
from .unfold import UnfoldReport, unfold


FOLDING_MARGIN = 0.1
"""The folding penalty acts where the Jacobian determinant is below this."""


def fit_transform(
    pairs: RoiPairs,
    options: Optional[FitOptions] = None,
    progress: Optional[StageProgress] = None,
    images: Optional[Tuple[Volume, Volume]] = None,
    initial: Optional[np.ndarray] = None,
    linear: Optional[LinearFit] = None,
) -> FitResult:
    """Fit the fixed -> moving transform that aligns every ROI pair.

    Arguments:
        pairs: ROI pairs; fixed masks on the fixed grid, moving masks on the moving grid.
        options: see FitOptions.
        progress: called as progress(stage, fraction in [0, 1]).
        images: (fixed, moving) volumes on the pairs' grids, for the image term (options.image_weight > 0).
        initial: B-spline parameters of an earlier fit on the same grid (FitResult.parameters): a warm start
            for an interactive update after a pair was added, removed or corrected. The optimisation then runs
            the finest level only, from those parameters; parameters of another grid are ignored (cold start).
        linear: the pre-alignment to use instead of one fitted on the pairs (the image registration's, when
            prompts refine it). With no pairs and no `linear`, the identity.
    Returns:
        FitResult whose field maps fixed point p to moving point p + field(p).
    """
    options = options or FitOptions()
    options.validate()
    if len(pairs) == 0 and (options.image_weight <= 0 or images is None):
        raise PromptRegisterError("No ROI pairs to register: nothing corresponds between the images.")
    if options.image_weight > 0:
        if images is None:
            raise PromptRegisterError("image_weight > 0 needs the fixed and moving images; pass images=(fixed, moving).")
        for volume, geometry, name in zip(images, (pairs.fixed_geometry, pairs.moving_geometry), ("fixed", "moving")):
            if volume.geometry.shape != geometry.shape:
                raise PromptRegisterError(f"the {name} image's grid {volume.geometry.shape} is not the ROI pairs' "
                                          f"{geometry.shape}")
    report = progress or (lambda stage, fraction: None)
    started = time.perf_counter()
    pairs = canonical_order(pairs)  # the same pairs give the same field, in whatever order they were found
    torch.manual_seed(options.seed)
    device = resolve_device(options.device, auto_mps=False)

    report("linear", 0.0)
    if linear is None:
        linear = fit_linear(pairs, options.linear) if len(pairs) else LinearFit.identity()
    fixed = pairs.fixed_geometry
    levels: List[LevelReport] = []
    if options.nonrigid and options.max_iterations > 0:
        problem = _Problem(pairs, linear, options, device, images if options.image_weight > 0 else None)
        parameters = problem.optimise(levels, report, initial)
        field_mm = problem.full_field(parameters)
        parameters_out = parameters.cpu().numpy()
    else:
        field_mm = _linear_field(fixed, linear)
        parameters_out = None
    repair = UnfoldReport()
    if options.unfold and options.nonrigid:
        report("unfold", 0.99)
        field_mm, repair = unfold(field_mm, _linear_field(fixed, linear), fixed)
    report("done", 1.0)
    return FitResult(field_mm, fixed, linear, levels, str(device), time.perf_counter() - started, repair,
                     parameters_out)


def canonical_order(pairs: RoiPairs) -> RoiPairs:
    """The pairs sorted by where they are (fixed then moving voxel indices of their first voxel, then size): the
    loss sums pairs in this order, so the float32 rounding, and with it where the optimiser stops, does not depend
    on the order the prompts came in (a batch sorts pairs by score, the interactive loop by click)."""
    def key(pair) -> tuple:
        return (int(np.flatnonzero(pair.fixed_mask.ravel())[:1].sum()), int(pair.fixed_mask.sum()),
                int(np.flatnonzero(pair.moving_mask.ravel())[:1].sum()), int(pair.moving_mask.sum()))

    return RoiPairs(pairs.fixed_geometry, pairs.moving_geometry, sorted(pairs, key=key))


def pair_weights(pairs: RoiPairs, weighting: str) -> np.ndarray:
    """Each pair's weight in the ROI loss under FitOptions.weighting.

    'equal' and 'score' give shares that sum to 1. 'confidence' gives agreement / n: the ROI terms as a whole
    count less when the pairs are unsure, so the image term (when on) has more say; with no pair sure at all
    (every agreement 0) the shares are equal, so an ROI-only fit still has something to fit."""
    count = len(pairs)
    if weighting == "confidence":
        confidence = np.array([float(np.clip(p.source.get("agreement", 1.0), 0.0, 1.0)) for p in pairs])
        return confidence / count if confidence.sum() > 0 else np.full(count, 1.0 / count)
    weights = np.array([max(p.score, 0.0) for p in pairs], dtype=float) if weighting == "score" else np.ones(count)
    if not weights.sum() > 0:
        weights = np.ones(count)
    return weights / weights.sum()


def _linear_field(geometry: Geometry, linear: LinearFit) -> np.ndarray:
    points = geometry.voxel_centres()
    return linear.apply(points) - points


class _RoiLoss:
    """One level's ROI term (a callable of the B-spline parameters) and what its report says of it."""

    def __init__(self, loss: Callable[[torch.Tensor], torch.Tensor], level_mm: Tuple[float, ...],
                 shape: Tuple[int, ...], points: int) -> None:
        self.loss, self.level_mm, self.shape, self.points = loss, level_mm, shape, points

    def __call__(self, parameters: torch.Tensor) -> torch.Tensor:
        return self.loss(parameters)


class _Problem:
    """Tensors and geometry shared by all optimisation levels."""

    def __init__(self, pairs: RoiPairs, linear: LinearFit, options: FitOptions, device: torch.device,
                 images: Optional[Tuple[Volume, Volume]] = None) -> None:
        self.pairs, self.linear, self.options, self.device = pairs, linear, options, device
        self.images = images
        self.dtype = torch.float32
        self.fixed, self.moving = pairs.fixed_geometry, pairs.moving_geometry
        self.grid = BSplineGrid(self.fixed.size, self.fixed.spacing, options.grid_spacing_mm)
        self.has_pairs = len(pairs) > 0
        if self.has_pairs:
            weights = pair_weights(pairs, options.weighting)
            self.pair_weights = torch.as_tensor(weights, device=device, dtype=self.dtype)
            self.crop = bounding_box(np.any([p.fixed_mask for p in pairs], axis=0), self.fixed, options.margin_mm)
            # Room for the coarsest level's smoothing to spread the moving masks outwards.
            self.moving_crop = bounding_box(np.any([p.moving_mask for p in pairs], axis=0), self.moving,
                                            self.level_voxel_mm()[0], pad_voxels=2)
            self.roi_volume = float(np.any([p.fixed_mask for p in pairs], axis=0).sum()) * self.fixed.voxel_volume
        else:  # the image registration: the image term alone, over the whole fixed image
            self.crop = tuple((0, n) for n in self.fixed.size)
            self.roi_volume = self.fixed.num_voxels * self.fixed.voxel_volume
        if options.regulariser_volume_mm3 > 0:  # a balance that does not change when pairs come and go
            self.roi_volume = float(options.regulariser_volume_mm3)
        self.image_weights = None  # where the image term counts more: near the pairs' fixed ROIs (focus_gain)
        if self.has_pairs and options.focus_gain > 0:
            union = np.any([p.fixed_mask for p in pairs], axis=0)
            near = ndimage.distance_transform_edt(~union, sampling=self.fixed.spacing[::-1]) <= options.focus_mm
            self.image_weights = 1.0 + options.focus_gain * near.astype(np.float32)
        self.regulariser_scale = self.fixed.num_voxels * self.fixed.voxel_volume / self.roi_volume
        self.planar_normal = (
            self.fixed.direction_matrix[:, int(np.argmin(self.fixed.size))] if min(self.fixed.size) == 1 else None
        )

    # -- level set-up -----------------------------------------------------------
    def level_voxel_mm(self) -> List[float]:
        """Target voxel size (mm) of each level, finest last."""
        extent = [(hi - lo) * s for (lo, hi), s in zip(self.crop, self.fixed.spacing)]
        finest = max(min(self.fixed.spacing), (float(np.prod(extent)) / self.options.max_eval_voxels) ** (1 / 3))
        return [finest * 2 ** (self.options.levels - 1 - level) for level in range(self.options.levels)]

    def _fixed_level(self, voxel_mm: float) -> Tuple[torch.Tensor, List[np.ndarray], Tuple[float, ...]]:
        """Soft fixed masks pooled to the level, and the voxel positions of the pooled centres."""
        factors = tuple(pool_factor(voxel_mm, s, hi - lo) for s, (lo, hi) in zip(self.fixed.spacing, self.crop))
        (i0, i1), (j0, j1), (k0, k1) = self.crop
        masks = np.stack([p.fixed_mask[k0:k1, j0:j1, i0:i1] for p in self.pairs]).astype(np.float32)
        tensor = pool(torch.as_tensor(masks, device=self.device), factors)
        positions = [
            lo + f * np.arange(n) + (f - 1) / 2.0
            for (lo, _), f, n in zip(self.crop, factors, tensor.shape[:0:-1])
        ]
        level_mm = tuple(f * s for f, s in zip(factors, self.fixed.spacing))
        return tensor, positions, level_mm

    def _moving_level(self, voxel_mm: float) -> Tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Moving masks smoothed to the level; affine map from LPS to grid_sample coordinates.

        A centred box filter about one level voxel wide (odd width in voxels)
        rather than block pooling: block boundaries would depend on how the
        moving image's axes are ordered or flipped, the centred filter only on
        its physical content. scipy's box filter costs the same for any width.
        """
        (i0, i1), (j0, j1), (k0, k1) = self.moving_crop
        masks = np.stack([p.moving_mask[k0:k1, j0:j1, i0:i1] for p in self.pairs]).astype(np.float32)
        width_kji = smoothing_widths(voxel_mm, self.moving)
        if max(width_kji) > 1:
            masks = np.stack([ndimage.uniform_filter(mask, width_kji, mode="constant") for mask in masks])
        tensor = torch.as_tensor(masks, device=self.device)
        size = tensor.shape[:0:-1]  # (i, j, k)
        # moving index x -> crop index x - lo -> normalised 2 (x - lo) / (n - 1) - 1
        scale = np.array([2.0 / (n - 1) if n > 1 else 0.0 for n in size])
        offset = np.array([-lo * s - 1.0 if n > 1 else 0.0 for (lo, _), n, s in zip(self.moving_crop, size, scale)])
        matrix = np.diag(scale) @ np.linalg.inv(self.moving.index_to_physical_matrix)  # LPS -> normalised, linear part
        translation = offset - matrix @ np.asarray(self.moving.origin)
        return tensor, matrix, translation

    def _smoothness_grid(self, grid: BSplineGrid) -> Tuple[List[np.ndarray], Tuple[float, ...]]:
        """Positions covering the whole fixed image where the regulariser is evaluated.

        Used by the bending energy, which is sampled; the gradient energy is an
        exact integral (BSplineGrid.gradient_energy). The similarity only sees the
        crop around the ROIs, but the field must stay smooth everywhere, so the
        samples cover the whole image at half the control spacing.
        """
        positions, steps_mm = [], []
        for size, spacing, control in zip(self.fixed.size, self.fixed.spacing, grid.spacing_voxels):
            step = max(1.0, control / 2.0)
            count = max(1, int(math.floor((size - 1) / step)) + 1)
            positions.append(np.arange(count) * step)
            steps_mm.append(step * spacing)
        return positions, tuple(steps_mm)

    def level_grids(self) -> List[BSplineGrid]:
        """Control grid of each level: coarse levels use 2x, 4x ... the final spacing.

        A coarse level only resolves coarse motion, so a coarse grid loses
        nothing there and is much cheaper; its spline is carried to the next
        grid exactly (BSplineGrid.refine). Where halving is not possible along
        some axis (control spacing below the voxel size) every level uses the
        final grid.
        """
        levels = self.options.levels
        grids = [
            BSplineGrid(self.fixed.size, self.fixed.spacing, self.options.grid_spacing_mm * 2 ** (levels - 1 - level))
            for level in range(levels - 1)
        ] + [self.grid]
        for coarse, fine in zip(grids, grids[1:]):
            if any(abs(c - 2 * f) > 1e-9 for c, f in zip(coarse.spacing_voxels, fine.spacing_voxels)):
                return [self.grid] * levels
        return grids

    # -- optimisation -------------------------------------------------------------
    def optimise(self, reports: List[LevelReport], progress: StageProgress,
                 initial: Optional[np.ndarray] = None) -> torch.Tensor:
        budget = ThreadBudget()  # no more threads than free cores, re-checked as the fit runs (threads.py)
        try:
            return self._optimise(reports, progress, budget, initial)
        finally:
            budget.restore()

    def _optimise(self, reports: List[LevelReport], progress: StageProgress, budget: ThreadBudget,
                  initial: Optional[np.ndarray] = None) -> torch.Tensor:
        level_sizes = self.level_voxel_mm()
        grids = self.level_grids()
        first = 0
        parameters = torch.zeros(grids[0].parameter_shape, device=self.device, dtype=self.dtype, requires_grad=True)
        if initial is not None and tuple(initial.shape) == tuple(grids[-1].parameter_shape):
            # warm start: the earlier fit already resolved the coarse motion; only the finest level moves on
            first = len(level_sizes) - 1
            parameters = torch.as_tensor(initial, device=self.device, dtype=self.dtype).clone().requires_grad_(True)
        for level, voxel_mm in enumerate(level_sizes):
            if level < first:
                continue
            started = time.perf_counter()
            grid = grids[level]
            if level > first and grid is not grids[level - 1]:  # the same spline on the finer control grid
                parameters = grids[level - 1].refine(parameters.detach(), grid).requires_grad_(True)
            smooth_positions, smooth_mm = self._smoothness_grid(grid)
            smooth_weights = grid.weights(smooth_positions, self.device, self.dtype) if self.options.regulariser == "bending" else None
            roi_loss = self._roi_loss(grid, level, voxel_mm, len(level_sizes)) if self.has_pairs else None
            optimiser = torch.optim.Adam([parameters], lr=self.options.learning_rate_mm)
            image_level = self._image_level(grid, voxel_mm) if self.images is not None else None
            folding = (FoldingPenalty(self.fixed, grid, self.linear, FOLDING_MARGIN, self.device, self.dtype)
                       if self.options.folding_weight > 0 else None)

            def loss_fn() -> torch.Tensor:
                penalty = self.options.smoothness * self._smoothness(grid, parameters, smooth_weights, smooth_mm)
                loss = penalty if roi_loss is None else self.options.roi_weight * roi_loss(parameters) + penalty
                if image_level is not None:
                    loss = loss + self.options.image_weight * image_level.loss(
                        image_level.displacement(parameters, self._project))
                if folding is not None:
                    loss = loss + self.options.folding_weight * folding(parameters, self._project)
                return loss

            history: List[float] = []
            stopped = "max_iterations"
            for iteration in range(self.options.max_iterations):
                budget.adapt()
                optimiser.zero_grad(set_to_none=True)
                loss = loss_fn()
                loss.backward()
                optimiser.step()
                history.append(float(loss.detach()))
                if not math.isfinite(history[-1]):
                    raise PromptRegisterError("The dense optimisation diverged (loss is not finite); lower learning_rate_mm.")
                progress(f"dense level {level + 1}/{len(level_sizes)}", (level + (iteration + 1) / self.options.max_iterations) / len(level_sizes))
                if converged(history, self.options):
                    stopped = "converged"
                    break
            with torch.no_grad():
                final = float(loss_fn())
            shape = tuple(roi_loss.shape) if roi_loss is not None else tuple(self.images[0].array.shape)
            points = roi_loss.points if roi_loss is not None else 0
            reports.append(LevelReport(level + 1, roi_loss.level_mm if roi_loss is not None else (voxel_mm,) * 3,
                                       shape, points, len(history), history[0] if history else final, final,
                                       stopped, time.perf_counter() - started))
        return parameters.detach()

    def _roi_loss(self, grid: BSplineGrid, level: int, voxel_mm: float, levels: int) -> "_RoiLoss":
        """The ROI pairs' term at this level: each warped moving ROI against its fixed ROI, on the band."""
        fixed_masks, positions, level_mm = self._fixed_level(voxel_mm)
        moving_masks, to_normalised, normalised_offset = self._moving_level(voxel_mm)
        weights = grid.weights(positions, self.device, self.dtype)
        band = Band.build(fixed_masks, level_mm, self.options.band_mm * 2 ** (levels - 1 - level))
        # Linear part of T in grid_sample coordinates, at the band's points only.
        index = np.stack(np.meshgrid(*positions[::-1], indexing="ij")[::-1], axis=-1).reshape(-1, 3)
        base = self.linear.apply(self.fixed.index_to_physical(index)) @ to_normalised.T + normalised_offset
        band = band.to(self.device)
        base_t = torch.as_tensor(base, device=self.device, dtype=self.dtype)[band.indices]  # (N, 3)
        to_normalised_t = torch.as_tensor(to_normalised.T, device=self.device, dtype=self.dtype)
        plane_size = len(positions[0]) * len(positions[1])
        base_k, taps_k = grid.taps(positions[2], 2)
        k_base = torch.as_tensor(base_k, device=self.device)[band.indices // plane_size]
        k_taps = torch.as_tensor(taps_k, device=self.device, dtype=self.dtype)[band.indices // plane_size]
        ji_index = band.indices % plane_size

        def loss(parameters: torch.Tensor) -> torch.Tensor:
            displacement = BSplineGrid.evaluate_at(parameters, weights, ji_index, k_base, k_taps)  # (N, 3) mm
            sample_at = base_t + self._project(displacement.T).T @ to_normalised_t
            warped = [  # pair k samples only its own moving mask, at its own band points
                F.grid_sample(moving_masks[k][None, None], points[None, None, None], mode="bilinear",
                              padding_mode="zeros", align_corners=True).reshape(-1)
                for k, points in enumerate(sample_at.split(band.sizes))
            ]
            return self._similarity(warped, band)

        return _RoiLoss(loss, level_mm, tuple(fixed_masks.shape[1:]), len(band.indices))

    def _image_level(self, grid: BSplineGrid, voxel_mm: float) -> ImageLevel:
        """The image term at this level: on the whole fixed image or the ROI crop, pooled to the level's
        voxel size or coarser (at most max_image_voxels)."""
        fixed, moving = self.images
        region = self.crop if self.options.image_region == "rois" else tuple((0, n) for n in self.fixed.size)
        extent = [(hi - lo) * s for (lo, hi), s in zip(region, self.fixed.spacing)]
        voxel_mm = max(voxel_mm, (float(np.prod(extent)) / self.options.max_image_voxels) ** (1 / 3))
        factors = [pool_factor(voxel_mm, s, hi - lo) for s, (lo, hi) in zip(self.fixed.spacing, region)]
        return build_level(fixed, moving, self.linear, grid, region, factors, voxel_mm, self.options.image_window_mm,
                           self.device, self.dtype, region_mask=self.image_weights, metric=self.options.image_metric)

    def _displacement(self, parameters: torch.Tensor, weights: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Field (3, k, j, i) in mm on the tensor grid the weights were built for."""
        return self._project(BSplineGrid.evaluate(parameters, weights))

    def _project(self, displacement: torch.Tensor) -> torch.Tensor:
        """For 2D images keep displacement vectors (3, ...) in the image plane."""
        if self.planar_normal is None:
            return displacement
        normal = torch.as_tensor(self.planar_normal, device=displacement.device, dtype=displacement.dtype)
        along = torch.einsum("a,a...->...", normal, displacement)
        return displacement - normal.reshape((3,) + (1,) * along.dim()) * along[None]

    def _similarity(self, warped: List[torch.Tensor], band: "Band") -> torch.Tensor:
        """Weighted mean over pairs of soft Dice loss + MSE normalised by the fixed ROI size.

        Points deeper inside a fixed ROI than the band count as overlapping
        (warped value 1), points farther outside as empty: see _Band.
        """
        values = band.values.split(band.sizes)
        overlap = torch.stack([(w * v).sum() for w, v in zip(warped, values)])
        warped_mass = torch.stack([w.sum() for w in warped])
        squared_error = torch.stack([((w - v) ** 2).sum() for w, v in zip(warped, values)])
        intersection = band.interior + overlap
        total = band.interior + warped_mass + band.fixed_total
        dice_loss = 1.0 - (2.0 * intersection + 1e-3) / (total + 1e-3)
        mse = squared_error / (band.fixed_total + 1e-3)
        return (self.pair_weights * (dice_loss + mse)).sum()

    def _smoothness(self, grid: BSplineGrid, parameters: torch.Tensor, weights: Optional[Tuple[torch.Tensor, ...]], step_mm: Sequence[float]) -> torch.Tensor:
        """The regulariser per mm^3 of ROI, so its balance does not change with the image extent."""
        if self.options.smoothness == 0:
            return parameters.sum() * 0.0
        if self.options.regulariser == "bending":
            return self._bending(self._displacement(parameters, weights), step_mm) * self.regulariser_scale
        return grid.gradient_energy(parameters, self.fixed.spacing) / self.roi_volume

    @staticmethod
    def _bending(displacement: torch.Tensor, level_mm: Sequence[float]) -> torch.Tensor:
        """Mean squared second derivatives along each axis (mm^-1), a cheap bending energy."""
        terms = []
        for axis, h in zip((3, 2, 1), level_mm):
            if displacement.shape[axis] > 2:
                terms.append((torch.diff(displacement, n=2, dim=axis) / h**2).pow(2).mean())
        return torch.stack(terms).sum() if terms else displacement.sum() * 0.0

    def full_field(self, parameters: torch.Tensor, chunk: int = 16) -> np.ndarray:
        """Total displacement (linear + B-spline) on the whole fixed grid, (k, j, i, 3) float64."""
        size_i, size_j, size_k = self.fixed.size
        wi, wj, wk = self.grid.weights([np.arange(size_i), np.arange(size_j), np.arange(size_k)], self.device, torch.float64)
        params = parameters.to(torch.float64)
        partial = torch.einsum("akji,xi->akjx", params, wi)
        partial = torch.einsum("akjx,yj->akyx", partial, wj)
        out = np.empty(self.fixed.shape + (3,), dtype=np.float64)
        i, j = np.meshgrid(np.arange(size_i), np.arange(size_j), indexing="xy")
        for start in range(0, size_k, chunk):
            stop = min(start + chunk, size_k)
            v = torch.einsum("akyx,zk->zyxa", partial, wk[start:stop]).cpu().numpy()
            if self.planar_normal is not None:
                v = v - (v @ self.planar_normal)[..., None] * self.planar_normal
            k = np.arange(start, stop)[:, None, None] * np.ones_like(i, dtype=float)[None]
            index = np.stack([np.broadcast_to(i, k.shape), np.broadcast_to(j, k.shape), k], axis=-1).astype(float)
            points = self.fixed.index_to_physical(index)
            out[start:stop] = self.linear.apply(points) - points + v
        return out
