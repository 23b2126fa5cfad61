"""Command line: `promptregister register | batch | fit | warp | evaluate | weights | worker`.

Every user-fixable problem ends with a one-line `error: ...` and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from . import __version__
from .cli_batch import add_batch_command
from .cli_console import ProgressBar, table
from .cli_register import add_register_command, join_negative_points
from .cli_weights import add_weights_command
from .errors import PromptRegisterError

EXAMPLES = """examples:
  the main job: register a moving image to a fixed one from three clicks (or --text, or --auto):
  promptregister register --fixed F.nii.gz --moving M.nii.gz --point -20,-35,24 --point -22,-38,27 --out-dir out
  promptregister register --help          (every option, grouped)

  a cohort, one pair per manifest row, on several processes or a Dask cluster (see batch --help):
  promptregister batch pairs.csv --out-dir cohort --workers 2

  the dense stage alone, from label maps you already have:
  promptregister fit --fixed F.nii.gz --moving M.nii.gz \\
      --fixed-labels FL.nii.gz --moving-labels ML.nii.gz --out transform.h5
  promptregister warp --reference F.nii.gz --moving M.nii.gz --transform transform.h5 --out warped.nii.gz
  promptregister evaluate --fixed-labels FL.nii.gz --moving-labels ML.nii.gz --transform transform.h5

Coordinates are ITK LPS millimetres. A transform maps fixed points to moving
points (ITK's resampling convention; Slicer loads it as the grid transform's
FromParent), so `warp` resamples the moving image onto the fixed grid.
"""


HEAVY_COMMANDS = ("batch", "fit", "register", "worker")
"""Commands that run PyTorch for long enough to be worth restarting under tcmalloc (see runtime.py)."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if argv is None and arguments and arguments[0] in HEAVY_COMMANDS:
        from .runtime import reexec_with_tcmalloc

        reexec_with_tcmalloc("promptregister", arguments)
    parser = build_parser()
    args = parser.parse_args(join_negative_points(arguments))
    if not getattr(args, "handler", None):
        parser.print_help()
        return 1
    try:
        return int(args.handler(args) or 0)
    except PromptRegisterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no output was written", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptregister",
        description="Training-free, prompt-driven image registration: ROI pairs -> displacement field.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"promptregister {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    add_register_command(commands)
    add_batch_command(commands)
    _add_fit(commands)
    _add_warp(commands)
    _add_evaluate(commands)
    add_weights_command(commands)
    _add_sample_data(commands)
    _add_worker(commands)
    return parser


def _add_sample_data(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "sample-data",
        help="write the bundled sample pair (two hippocampus MR subjects with labels) into a folder",
        description="Copies case001 (fixed) and case004 (moving), T1 MR crops with hippocampus labels (CC BY-SA "
                    "4.0; the licence note comes with them), into DIR, for the quick start.",
    )
    p.add_argument("folder", metavar="DIR", help="folder to write them to (created if needed)")
    p.set_defaults(handler=_run_sample_data)


def _run_sample_data(args: argparse.Namespace) -> int:
    from .sample_data import FIXED, MOVING, QUICK_START_POINTS, write_sample_data

    written = write_sample_data(args.folder)
    folder = Path(args.folder)
    print(f"wrote {', '.join(written)} to {folder}")
    print(f"try: promptregister register --fixed {folder / (FIXED + '_t1.nii.gz')} "
          f"--moving {folder / (MOVING + '_t1.nii.gz')} "
          + " ".join(f"--point {point}" for point in QUICK_START_POINTS) + " --out-dir out")
    return 0


def _add_worker(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "worker", help="serve the JSON-lines worker protocol on stdin/stdout (what the Slicer module starts)",
        description="The background worker (same as `python -m promptregister.worker`): one JSON request per line "
                    "on stdin, events on stdout, logs on stderr; no network port. docs/developer-guide.md has the "
                    "protocol.")
    p.set_defaults(handler=_run_worker)


def _run_worker(args: argparse.Namespace) -> int:
    from .worker.server import main as serve

    return serve()


# -- fit ---------------------------------------------------------------------------
def _add_fit(commands: argparse._SubParsersAction) -> None:
    from .dense.fit import FitOptions

    defaults = FitOptions()
    p = commands.add_parser(
        "fit",
        help="fit a transform that aligns label k of the moving image with label k of the fixed image",
        description="Fit the fixed -> moving transform from pairs of corresponding labels "
        "(label k in the fixed map <-> label k in the moving map): a linear pre-alignment "
        "from the label centroids and bounding boxes, then a smooth B-spline displacement field.",
    )
    p.add_argument("--fixed", help="fixed (reference) image; if given, its grid must match --fixed-labels")
    p.add_argument("--moving", help="moving image; if given, its grid must match --moving-labels")
    p.add_argument("--fixed-labels", required=True, help="label map on the fixed grid")
    p.add_argument("--moving-labels", required=True, help="label map on the moving grid")
    p.add_argument("--labels", type=_int_list, help="comma-separated labels to use (default: all labels in both)")
    p.add_argument("--out", required=True, help="output transform: .h5 (recommended), .tfm, or .nii.gz (displacement field)")
    p.add_argument("--linear-only", action="store_true", help="stop after the linear pre-alignment")
    p.add_argument("--linear", choices=["none", "translation", "rigid", "affine"], default=defaults.linear, help="pre-alignment model (default %(default)s)")
    p.add_argument("--grid-spacing", type=float, default=defaults.grid_spacing_mm, metavar="MM", help="B-spline control point spacing in mm (default %(default)s)")
    p.add_argument("--smoothness", type=float, default=defaults.smoothness, help="regulariser weight (default %(default)s)")
    p.add_argument("--regulariser", choices=["gradient", "bending"], default=defaults.regulariser, help="smoothness penalty of the field: 'gradient' (first derivatives) or 'bending' (second derivatives, bending energy; default %(default)s)")
    p.add_argument("--max-iterations", type=int, default=defaults.max_iterations, help="cap per resolution level (default %(default)s)")
    p.add_argument("--device", default=defaults.device, help="auto, cpu or cuda (default %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="seeds torch, so that a rerun on the CPU gives the same field (at one thread count) (default %(default)s)")
    p.add_argument("--warped", help="also write the moving image resampled onto the fixed grid")
    p.add_argument("--json", action="store_true", help="print the fit summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_fit)


def _run_fit(args: argparse.Namespace) -> int:
    from .dense.fit import FitOptions, fit_transform
    from .geometry import require_same_grid
    from .io import read_label_map, read_volume, write_transform, write_volume
    from .io.atomic import check_writable
    from .metrics import dice
    from .roipairs import RoiPairs
    from .warp import warp_volume

    out = Path(args.out)
    check_writable(out)
    if args.warped:
        check_writable(Path(args.warped))
    fixed_labels = read_label_map(args.fixed_labels)
    moving_labels = read_label_map(args.moving_labels)
    moving_image = None
    if args.fixed:
        require_same_grid(read_volume(args.fixed).geometry, fixed_labels.geometry, "fixed image", "fixed label map")
    if args.moving:
        moving_image = read_volume(args.moving)
        require_same_grid(moving_image.geometry, moving_labels.geometry, "moving image", "moving label map")
    if args.warped and moving_image is None:
        raise PromptRegisterError("--warped needs --moving (the image to resample).")
    pairs = RoiPairs.from_label_maps(fixed_labels, moving_labels, args.labels)
    options = FitOptions(
        linear=args.linear,
        nonrigid=not args.linear_only,
        grid_spacing_mm=args.grid_spacing,
        smoothness=args.smoothness,
        regulariser=args.regulariser,
        max_iterations=args.max_iterations,
        device=args.device,
        seed=args.seed,
    )
    with ProgressBar(args.quiet) as progress:
        result = fit_transform(pairs, options, progress)
    transform = result.linear.to_sitk() if args.linear_only else result.transform()
    write_transform(transform, out)
    if args.warped:
        write_volume(warp_volume(moving_image, transform, fixed_labels.geometry), args.warped)
    warped_labels = warp_volume(moving_labels, transform, fixed_labels.geometry, labels=True).array
    summary = result.summary()
    summary["transform"] = str(out)
    summary["dice_after"] = {pair.name: dice(pair.fixed_mask, warped_labels == pair.source["label"]) for pair in pairs}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        note = f" ({result.linear.note})" if result.linear.note else ""
        print(f"linear pre-alignment: {result.linear.model}{note}")
        for level in result.levels:
            print(f"level {level.level}: {level.iterations} iterations, loss {level.loss_start:.3f} -> {level.loss_end:.3f} ({level.stopped}, {level.seconds:.1f} s)")
        print(table(["pair", "Dice after"], [[name, f"{value:.3f}"] for name, value in summary["dice_after"].items()]))
        print(f"wrote {out} in {result.seconds:.1f} s on {result.device}")
    return 0


# -- warp --------------------------------------------------------------------------
def _add_warp(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "warp",
        help="resample a moving image onto the reference grid through a transform",
        description="Resample the moving image onto the reference (fixed) grid: out(p) = moving(T(p)).",
    )
    p.add_argument("--reference", required=True, help="image whose grid the output takes (the fixed image)")
    p.add_argument("--moving", required=True, help="image or label map to resample")
    p.add_argument("--transform", required=True, help="fixed -> moving transform (.h5, .tfm or displacement-field image)")
    p.add_argument("--out", required=True, help="output image")
    p.add_argument("--labels", action="store_true", help="the moving image is a label map: nearest-neighbour, integer output")
    p.set_defaults(handler=_run_warp)


def _run_warp(args: argparse.Namespace) -> int:
    from .io import read_label_map, read_transform, read_volume, write_label_map, write_volume
    from .io.atomic import check_writable
    from .warp import warp_volume

    check_writable(Path(args.out))
    reference = read_volume(args.reference)
    moving = read_label_map(args.moving) if args.labels else read_volume(args.moving)
    warped = warp_volume(moving, read_transform(args.transform), reference.geometry, labels=args.labels)
    (write_label_map if args.labels else write_volume)(warped, args.out)
    print(f"wrote {args.out}")
    return 0


# -- evaluate ----------------------------------------------------------------------
def _add_evaluate(commands: argparse._SubParsersAction) -> None:
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
    p.add_argument("--labels", type=_int_list, metavar="K,K,...",
                   help="only these labels, comma-separated (default: every label present in both)")
    p.add_argument("--fixed-landmarks", help="CSV (x,y,z per row) or Slicer .fcsv of fixed landmarks")
    p.add_argument("--moving-landmarks", help="the corresponding moving landmarks, same order")
    p.add_argument("--landmark-space", choices=["lps", "ras"], default="lps", help="space of CSV landmarks (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_registration
    from .io import read_label_map, read_transform
    from .landmarks import read_landmarks

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
    rows = [[str(row["label"])] + [_number(row[k]) for k in keys] for row in report["labels"]]
    rows.append(["mean"] + [_number(report["mean"][k]) for k in keys])
    print(table(header, rows))
    jac = report["jacobian"]
    print(f"Jacobian determinant: min {jac['jacobian_min']:.3f}, max {jac['jacobian_max']:.3f}, folding {jac['folding_percent']:.3f} % of voxels")
    if "tre" in report:
        tre = report["tre"]
        print(f"TRE: {tre['before_mean_mm']:.2f} mm before, {tre['after_mean_mm']:.2f} mm after (max {tre['after_max_mm']:.2f} mm)")
    return 0


# -- helpers -----------------------------------------------------------------------
def _int_list(text: str) -> List[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _number(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
