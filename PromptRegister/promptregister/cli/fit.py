"""`promptregister fit`: the dense stage alone, from label maps the user already has."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import PromptRegisterError
from .console import ProgressBar, table
from .values import label_list


def add_fit_command(commands: argparse._SubParsersAction) -> None:
    from ..dense.fit import FitOptions

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
    p.add_argument("--labels", type=label_list, help="comma-separated labels to use (default: all labels in both)")
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
    p.set_defaults(handler=run_fit)


def run_fit(args: argparse.Namespace) -> int:
    from ..dense.fit import FitOptions, fit_transform
    from ..geometry import require_same_grid
    from ..io import read_label_map, read_volume, write_transform, write_volume
    from ..io.write_errors import check_free_space
    from ..io.images import check_image_output
    from ..io.transforms import check_transform_output
    from ..metrics import dice
    from ..outputs import output_bytes
    from ..roipairs import RoiPairs
    from ..warp import warp_volume

    out = check_transform_output(args.out, displacement_field=not args.linear_only)
    if args.warped:
        check_image_output(args.warped)
    fixed_labels = read_label_map(args.fixed_labels)
    check_free_space(out.parent if str(out.parent) else Path("."),
                     output_bytes(fixed_labels.geometry, resampled=bool(args.warped)), "the transform")
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
