"""Everything mode for SAM-family models: the automatic mask generator's
single-crop algorithm, with less work per slice.

What the stock `SamAutomaticMaskGenerator` does per grid point: decode three
masks, upsample all of them to 1024 x 1024 and then to the slice, compute the
stability score at full resolution, filter, de-duplicate by box NMS. Here:
- grid points on the dark background of a scan are skipped (optional);
- points are decoded in batches (64 by default, as the stock generator) by
  `ManyPromptDecoder`, which shares the image-side work of the mask decoder
  between prompts and computes masks only for prompts that pass the predicted
  IoU filter;
- a stability
  pre-filter runs on the 256 x 256 logits of the valid region (with a margin),
  so most masks are never upsampled;
- only surviving masks are upsampled, their stability is recomputed exactly at
  full resolution and the real threshold applied, then box NMS as in the stock
  code. With the background filter off, the kept masks are the stock ones.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .base import EverythingMasks, EverythingOptions, PromptDecoding, SliceEmbedding, foreground_mask, point_grid

STABILITY_PREFILTER_MARGIN = 0.1
"""How far below the threshold a low-resolution stability may be and still be upsampled and checked exactly."""


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at threshold +/- offset (one contains the other); (n,) float."""
    inner = (logits > threshold + offset).flatten(1).sum(1, dtype=torch.int64)
    outer = (logits > threshold - offset).flatten(1).sum(1, dtype=torch.int64)
    return inner.float() / outer.float()


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(n, H, W) bool -> (n, 4) boxes x0, y0, x1, y1 with inclusive max pixel indices; [0, 0, 0, 0] if empty."""
    n, height, width = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.int64)
    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    row_index = torch.arange(height)[None, :]
    col_index = torch.arange(width)[None, :]
    y1 = torch.where(rows, row_index, -1).max(dim=1).values
    y0 = torch.where(rows, row_index, height).min(dim=1).values
    x1 = torch.where(cols, col_index, -1).max(dim=1).values
    x0 = torch.where(cols, col_index, width).min(dim=1).values
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    empty = ~rows.any(dim=1)
    boxes[empty] = 0
    return boxes


def grid_points(embedding: SliceEmbedding, options: EverythingOptions) -> np.ndarray:
    """The prompt grid, without points on background when asked (each kept point sees foreground within half a step)."""
    height, width = embedding.grid.image_size
    points = point_grid(options.points_per_side, (height, width))
    if not options.foreground_only:
        return points
    foreground = foreground_mask(embedding.image, options.foreground_level)
    radius = max(1, int(round(0.5 * min(height, width) / options.points_per_side)))
    reach = ndimage.binary_dilation(foreground, iterations=radius)
    rows = np.clip(points[:, 1].astype(int), 0, height - 1)
    cols = np.clip(points[:, 0].astype(int), 0, width - 1)
    return points[reach[rows, cols]]


@torch.no_grad()
def sam_everything(segmenter: PromptDecoding, embedding: SliceEmbedding,
                   options: EverythingOptions) -> EverythingMasks:
    """All masks of one slice, best first (see the module docstring)."""
    from torchvision.ops import batched_nms

    grid = embedding.grid
    height, width = grid.image_size
    threshold = float(getattr(segmenter.model, "mask_threshold", 0.0))
    points = grid_points(embedding, options)

    decoder = segmenter.many_prompt_decoder(embedding)
    kept_logits, kept_iou, kept_points = [], [], []
    for start in range(0, len(points), options.points_per_batch):
        batch = points[start:start + options.points_per_batch]
        # float64 coordinates, as the stock generator passes them to the prompt encoder
        coords = torch.as_tensor(grid.to_input(batch), device=segmenter.device)[:, None, :]
        labels = torch.ones((len(batch), 1), dtype=torch.int, device=segmenter.device)
        decoded = decoder(segmenter.sparse_prompts(coords, labels), multimask=True)
        iou = decoded.iou
        keep = torch.ones_like(iou, dtype=torch.bool)
        if options.pred_iou_thresh > 0.0:
            keep &= iou > options.pred_iou_thresh
        # the quality filter needs only the IoU head: masks are computed for the prompts with a mask left
        wanted = torch.nonzero(keep.any(dim=1)).flatten()
        if len(wanted) == 0:
            continue
        low_res = decoded.for_prompts(wanted)
        keep, iou = keep[wanted].flatten(), iou[wanted].flatten()
        n_masks = low_res.shape[1]
        low_rows = int(np.ceil(grid.input_size[0] / grid.model_size * low_res.shape[-2]))
        low_cols = int(np.ceil(grid.input_size[1] / grid.model_size * low_res.shape[-1]))
        low_res = low_res.flatten(0, 1)
        batch_points = torch.as_tensor(np.repeat(batch[wanted.cpu().numpy()], n_masks, axis=0))
        if options.stability_score_thresh > 0.0:
            rough = stability_score(low_res[:, :low_rows, :low_cols], threshold, options.stability_score_offset)
            keep &= rough >= options.stability_score_thresh - STABILITY_PREFILTER_MARGIN
        index = torch.nonzero(keep).flatten()
        if len(index) == 0:
            continue
        logits = segmenter.upscale_logits(low_res[index][None], grid)[0]
        kept_logits.append(logits.float().cpu())
        kept_iou.append(iou[index].float().cpu())
        kept_points.append(batch_points[index.cpu()])

    if not kept_logits:
        empty = np.zeros((0, height, width), dtype=bool)
        return EverythingMasks(empty, np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros((0, 2)))
    logits = torch.cat(kept_logits)
    iou = torch.cat(kept_iou)
    prompts = torch.cat(kept_points)
    stability = stability_score(logits, threshold, options.stability_score_offset)
    if options.stability_score_thresh > 0.0:
        exact = stability >= options.stability_score_thresh
        logits, iou, prompts, stability = logits[exact], iou[exact], prompts[exact], stability[exact]
    masks = logits > threshold
    boxes = mask_boxes(masks)
    order = batched_nms(boxes.float(), iou, torch.zeros(len(boxes)), iou_threshold=options.box_nms_thresh)
    return EverythingMasks(masks=masks[order].numpy(), scores=iou[order].numpy(),
                           stability=stability[order].numpy(), points=prompts[order].numpy())


def stock_everything(segmenter: PromptDecoding, image: np.ndarray, options: EverythingOptions) -> EverythingMasks:
    """The package's own SamAutomaticMaskGenerator with the same settings (the reference and benchmark peer)."""
    import importlib

    package = importlib.import_module(type(segmenter.model).__module__.split(".")[0])
    generator = package.SamAutomaticMaskGenerator(
        segmenter.model, points_per_side=options.points_per_side, points_per_batch=options.points_per_batch,
        pred_iou_thresh=options.pred_iou_thresh, stability_score_thresh=options.stability_score_thresh,
        stability_score_offset=options.stability_score_offset, box_nms_thresh=options.box_nms_thresh,
        output_mode="binary_mask")
    records = generator.generate(image)
    height, width = image.shape[:2]
    if not records:
        return EverythingMasks(np.zeros((0, height, width), bool), np.zeros(0, np.float32),
                               np.zeros(0, np.float32), np.zeros((0, 2)))
    return EverythingMasks(
        masks=np.stack([r["segmentation"] for r in records]).astype(bool),
        scores=np.array([r["predicted_iou"] for r in records], np.float32),
        stability=np.array([r["stability_score"] for r in records], np.float32),
        points=np.array([r["point_coords"][0] for r in records], np.float64))
