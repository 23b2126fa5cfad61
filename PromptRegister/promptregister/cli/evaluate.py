"""`promptregister evaluate`: Dice, HD95, centroids, folding and TRE of a transform."""

from __future__ import annotations

import argparse
import json

from ..errors import PromptRegisterError
from .console import table
from .values import label_list, number


def add_evaluate_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "evaluate",
        help="Dice, HD95, centroid distance, TRE and Jacobian figures of a transform",
        description="Compare the fixed labels with the moving labels before (identity) and after the transform.",
    )
    p.add_argument("--fixed-labels", required=True,
                   help="label map on the fixed image's grid (integer labels, 0 = background)")
    p.add_argument("--moving-labels", required=True,
                   help="label map on the moving image's grid; label k is compared with the fixed label k")
    p.add_argument("--transform", required=True, help="fixed -> moving transform (transform.h5 of `register`)")
    p.add_argument("--labels", type=label_list, metavar="K,K,...",
                   help="only these labels, comma-separated (default: every label present in both)")
    p.add_argument("--fixed-landmarks", help="CSV (x,y,z per row) or Slicer .fcsv of fixed landmarks")
    p.add_argument("--moving-landmarks", help="the corresponding moving landmarks, same order")
    p.add_argument("--landmark-space", choices=["lps", "ras"], default="lps", help="space of CSV landmarks (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate_registration
    from ..io import read_label_map, read_transform
    from ..landmarks import read_landmarks

    if bool(args.fixed_landmarks) != bool(args.moving_landmarks):
        raise PromptRegisterError("Give both --fixed-landmarks and --moving-landmarks, or neither.")
    fixed_points = read_landmarks(args.fixed_landmarks, args.landmark_space) if args.fixed_landmarks else None
    moving_points = read_landmarks(args.moving_landmarks, args.landmark_space) if args.moving_landmarks else None
    report = evaluate_registration(
        read_label_map(args.fixed_labels), read_label_map(args.moving_labels), read_transform(args.transform), args.labels, fixed_points, moving_points
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    header = ["label", "Dice before", "Dice after", "HD95 before (mm)", "HD95 after (mm)", "centroid before (mm)", "centroid after (mm)"]
    keys = ["dice_before", "dice_after", "hd95_mm_before", "hd95_mm_after", "centroid_mm_before", "centroid_mm_after"]
    rows = [[str(row["label"])] + [number(row[k]) for k in keys] for row in report["labels"]]
    rows.append(["mean"] + [number(report["mean"][k]) for k in keys])
    print(table(header, rows))
    jac = report["jacobian"]
    print(f"Jacobian determinant: min {jac['jacobian_min']:.3f}, max {jac['jacobian_max']:.3f}, folding {jac['folding_percent']:.3f} % of voxels")
    if "tre" in report:
        tre = report["tre"]
        print(f"TRE: {tre['before_mean_mm']:.2f} mm before, {tre['after_mean_mm']:.2f} mm after (max {tre['after_max_mm']:.2f} mm)")
    return 0
