"""Render Resources/Screenshots/PromptRegister.png from a real registration result.

It shows what the module produces (not its panel, which needs the Slicer application): the fixed and moving
scans, the ROI pairs in matching colours on both, and the fixed scan overlaid with the resampled moving scan
before and after registration. Make the result first (README quick start, with --resampled), then:

    python Resources/Screenshots/make_screenshot.py --result out --fixed F.nii.gz --moving M.nii.gz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "PromptRegister"))

from PromptRegisterLib.mrml import PAIR_COLOURS  # noqa: E402  (the colours Slicer shows the pairs in)
from promptregister.io import read_label_map, read_volume  # noqa: E402



def window(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, [1, 99])
    return np.clip((image - low) / max(high - low, 1e-6), 0, 1)


def with_rois(grey: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for label in np.unique(labels[labels > 0]):
        colour = np.array(PAIR_COLOURS[(int(label) - 1) % len(PAIR_COLOURS)])
        mask = labels == label
        rgb[mask] = 0.45 * rgb[mask] + 0.55 * colour
    return rgb


def slice_with_most(labels: np.ndarray, axis: int) -> int:
    other = tuple(a for a in range(3) if a != axis)
    return int(np.argmax((labels > 0).sum(axis=other)))


def roi_crop(a: np.ndarray, b: np.ndarray, axis: int, margin: int):
    """In-plane bounding box of both ROI sets, grown by `margin` voxels (the crops' padded borders stay out)."""
    both = np.any((a > 0) | (b > 0), axis=axis)
    crop = []
    for dim in range(2):
        present = np.flatnonzero(np.any(both, axis=1 - dim))
        crop.append(slice(max(int(present[0]) - margin, 0), int(present[-1]) + margin + 1))
    return tuple(crop)


def overlay(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Fixed in green, moving in magenta: aligned structures turn grey."""
    return np.stack([moving, fixed, moving], axis=-1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--result", type=Path, required=True, help="a register --out-dir made with --resampled")
    parser.add_argument("--fixed", type=Path, required=True)
    parser.add_argument("--moving", type=Path, required=True)
    parser.add_argument("--axis", type=int, default=0, help="array axis to slice across (0, 1 or 2)")
    parser.add_argument("--margin", type=int, default=10, help="voxels shown around the ROIs")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("PromptRegister.png"))
    args = parser.parse_args()
    fixed = read_volume(args.fixed).array.astype(float)
    moving = read_volume(args.moving).array.astype(float)
    resampled = read_volume(args.result / "moving_resampled.nii.gz").array.astype(float)
    fixed_rois = read_label_map(args.result / "fixed_rois.nii.gz").array
    moving_rois = read_label_map(args.result / "moving_rois.nii.gz").array
    if fixed.shape != moving.shape:
        raise SystemExit("this figure expects fixed and moving on grids of the same size")
    axis = args.axis
    k_fixed = slice_with_most(fixed_rois, axis)
    k_moving = slice_with_most(moving_rois, axis)
    crop = roi_crop(fixed_rois, moving_rois, axis, args.margin)
    f, m, r = (np.take(window(v), k, axis=axis)[crop] for v, k in ((fixed, k_fixed), (moving, k_moving),
                                                                      (resampled, k_fixed)))
    m_same = np.take(window(moving), k_fixed, axis=axis)[crop]
    fr, mr = np.take(fixed_rois, k_fixed, axis=axis)[crop], np.take(moving_rois, k_moving, axis=axis)[crop]
    panels = [
        (with_rois(m, mr), "moving: ROIs from the clicked points"),
        (with_rois(f, fr), "fixed: the corresponding ROIs"),
        (overlay(f, m_same), "before: fixed (green) + moving (magenta)"),
        (overlay(f, r), "after: fixed + registered moving"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(13, 3.8), dpi=110, facecolor="#1e1e1e")
    for panel, (picture, title) in zip(axes, panels):
        panel.imshow(np.flipud(picture), interpolation="nearest")
        panel.set_title(title, color="white", fontsize=10)
        panel.axis("off")
    figure.suptitle("PromptRegister result (hippocampus MR, two subjects; PromptReg from 6 clicks, classical stand-in segmenter)", color="white",
                    fontsize=12)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".tmp.png")
    figure.savefig(temporary, facecolor=figure.get_facecolor())
    temporary.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
