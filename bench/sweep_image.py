"""Choose the image registration's settings (register with no prompt) on the SWEEP pairs.

The image registration is the dense stage on the images alone, from a linear start found on the images; every
prompt refines it. No segmenter is involved, so a setting costs seconds a pair. Prints a Markdown table per
setting: mean label Dice, its 30th percentile, how many pairs ended below their Dice before (and by more than
0.02), worst folding, mean seconds; then the chosen one (best mean Dice among settings with no folded voxel and
no pair more than 0.02 below its "before").

Run: python bench/sweep_image.py [--cases hippocampus|mrus] [--set NAME=V1,V2 ...] [--pairs N]
     NAME is a flat option of register (promptregister.options.FLAT_OPTIONS) or any FitOptions field, e.g. --set image_linear=none,rigid
     --set regulariser_volume_mm3=0,2000 --set image_weight=32,64; every combination is run.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import MRUS_SWEEP_CASES, SWEEP_PAIRS, hippocampus_case, mrus_case  # noqa: E402
from register import mean_dice  # noqa: E402

from promptregister.register import FLAT_OPTIONS, options_from_flat, register_images  # noqa: E402


def parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", choices=("hippocampus", "mrus"), default="hippocampus")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=V1,V2")
    parser.add_argument("--pairs", type=int, default=0, help="only the first N sweep cases")
    args = parser.parse_args()
    preset = "multimodal" if args.cases == "mrus" else "default"
    if args.cases == "mrus":
        cases = [mrus_case(c) for c in MRUS_SWEEP_CASES]
    else:
        cases = [hippocampus_case(f, m) for f, m in SWEEP_PAIRS]
    if args.pairs:
        cases = cases[:args.pairs]
    names, values = [], []
    for entry in args.set:
        name, _, text = entry.partition("=")
        names.append(name)
        values.append([parse_value(v) for v in text.split(",")])
    before = [mean_dice(c.fixed_labels, c.moving_labels, _identity()) for c in cases]
    print(f"{len(cases)} {args.cases} sweep cases, preset {preset}; mean Dice before {np.mean(before):.4f}",
          flush=True)
    rows = []
    for combination in itertools.product(*values) if values else [()]:
        setting = dict(zip(names, combination))
        flat = {k: v for k, v in setting.items() if k in FLAT_OPTIONS}
        options = options_from_flat(flat, preset=preset)
        fit_fields = {k: v for k, v in setting.items() if k not in FLAT_OPTIONS}
        if fit_fields:  # any other FitOptions field, e.g. levels=4
            options = replace(options, fit=replace(options.fit, **fit_fields))
        dice, folding, seconds = [], [], []
        for case in cases:
            started = time.perf_counter()
            result = register_images(case.fixed, case.moving, options)
            seconds.append(time.perf_counter() - started)
            dice.append(mean_dice(case.fixed_labels, case.moving_labels, result.transform()))
            folding.append(result.jacobian["folding_percent"])
        change = np.array(dice) - np.array(before)
        row = {"setting": ", ".join(f"{k}={v}" for k, v in setting.items()) or "defaults",
               "mean": float(np.mean(dice)), "p30": float(np.percentile(dice, 30)),
               "worse": int((change < 0).sum()), "worse_002": int((change < -0.02).sum()),
               "folding": float(np.max(folding)), "seconds": float(np.mean(seconds))}
        rows.append(row)
        print(f"| {row['setting']} | {row['mean']:.4f} | {row['p30']:.4f} | {row['worse']} ({row['worse_002']}) | "
              f"{row['folding']:.3f} | {row['seconds']:.1f} |", flush=True)
    print()
    print("| setting | mean Dice | 30th pct | pairs worse (by > 0.02) | max folding % | s a pair |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['setting']} | {row['mean']:.4f} | {row['p30']:.4f} | {row['worse']} ({row['worse_002']}) | "
              f"{row['folding']:.3f} | {row['seconds']:.1f} |")
    eligible = [r for r in rows if r["folding"] == 0 and r["worse_002"] == 0] or rows
    print(f"\nchosen: {max(eligible, key=lambda r: r['mean'])['setting']}")


def _identity():
    import SimpleITK as sitk

    return sitk.Transform(3, sitk.sitkIdentity)


if __name__ == "__main__":
    main()
