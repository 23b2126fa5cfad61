"""`promptregister sample-data DIR`: the bundled sample pair, for the quick start."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_sample_data_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "sample-data",
        help="write the bundled sample pair (two hippocampus MR subjects with labels) into a folder",
        description="Copies case001 (fixed) and case004 (moving), T1 MR crops with hippocampus labels (CC BY-SA "
                    "4.0; the licence note comes with them), into DIR, for the quick start.",
    )
    p.add_argument("folder", metavar="DIR", help="folder to write them to (created if needed)")
    p.set_defaults(handler=run_sample_data)


def run_sample_data(args: argparse.Namespace) -> int:
    from ..sample_data import FIXED, MOVING, QUICK_START_POINTS, write_sample_data

    written = write_sample_data(args.folder)
    folder = Path(args.folder)
    print(f"wrote {', '.join(written)} to {folder}")
    print(f"try: promptregister register --fixed {folder / (FIXED + '_t1.nii.gz')} "
          f"--moving {folder / (MOVING + '_t1.nii.gz')} "
          + " ".join(f"--point {point}" for point in QUICK_START_POINTS) + " --out-dir out")
    return 0
