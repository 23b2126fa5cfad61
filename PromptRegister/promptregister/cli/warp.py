"""`promptregister warp`: resample an image or a label map through a transform."""

from __future__ import annotations

import argparse


def add_warp_command(commands: argparse._SubParsersAction) -> None:
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
    p.set_defaults(handler=run_warp)


def run_warp(args: argparse.Namespace) -> int:
    from ..io import read_label_map, read_transform, read_volume, write_label_map, write_volume
    from ..io.images import check_image_output
    from ..warp import warp_volume

    check_image_output(args.out)
    reference = read_volume(args.reference)
    moving = read_label_map(args.moving) if args.labels else read_volume(args.moving)
    warped = warp_volume(moving, read_transform(args.transform), reference.geometry, labels=args.labels)
    (write_label_map if args.labels else write_volume)(warped, args.out)
    print(f"wrote {args.out}")
    return 0


# -- evaluate ----------------------------------------------------------------------
