"""Find the peers' strongest settings on the SWEEP pairs, as our own defaults are found (bench/sweep_register.py).

A comparison is fair only against each peer's best setting for the task, not its quick default. ANTs' is known
(antspyx "SyNCC", SyN with the cross-correlation metric; bench/peers.py ants_syncc). For elastix this script
tries the settings in bench/peers.ELASTIX_SETTINGS (metric, iterations, final control-point spacing) on the
sweep pairs, which no test asserts on and no benchmark table reports, and prints mean and 30th-percentile label
Dice, pairs worse than before, folding and seconds per pair; the best mean Dice becomes peers.ELASTIX_STRONG.

Run: python bench/sweep_peers.py [--settings default,ncc-1000] [--every 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402
from cases import SWEEP_PAIRS, hippocampus_case  # noqa: E402

from promptregister.evaluate import evaluate_registration  # noqa: E402
from promptregister.io.transforms import displacement_field_transform  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default=",".join(peers.ELASTIX_SETTINGS),
                        help="elastix settings of peers.ELASTIX_SETTINGS (default: all)")
    parser.add_argument("--every", type=int, default=1, help="use every Nth sweep pair (default %(default)s: all)")
    args = parser.parse_args()
    settings = args.settings.split(",")
    unknown = set(settings) - set(peers.ELASTIX_SETTINGS)
    if unknown:
        parser.error(f"unknown settings {sorted(unknown)}; known: {', '.join(peers.ELASTIX_SETTINGS)}")
    pairs = SWEEP_PAIRS[::args.every]
    results = {name: [] for name in settings}  # name -> [(dice before, dice after, folding %, seconds)]
    done = 0
    try:
        for fixed_id, moving_id in pairs:
            case = hippocampus_case(fixed_id, moving_id)
            entries = {}
            for name in settings:
                field, seconds = peers.elastix_bspline(case.fixed, case.moving, False, setting=name)
                report = evaluate_registration(case.fixed_labels, case.moving_labels,
                                               displacement_field_transform(field, case.fixed.geometry))
                entries[name] = (report["mean"]["dice_before"], report["mean"]["dice_after"],
                                 report["jacobian"]["folding_percent"], seconds)
                print(f"  {case.name}, elastix {name}: Dice {entries[name][0]:.3f} -> {entries[name][1]:.3f}, "
                      f"folding {entries[name][2]:.3f} %, {seconds:.1f} s", file=sys.stderr, flush=True)
            for name, entry in entries.items():  # a pair counts once every setting has run on it
                results[name].append(entry)
            done += 1
    except KeyboardInterrupt:  # Ctrl-C: the table of the pairs finished so far
        print(f"stopped after {done} of {len(pairs)} pairs", file=sys.stderr)
    if not done:
        return
    print(f"elastix on {done} sweep pairs ({time.strftime('%Y-%m-%d %H:%M')}):\n")
    print("| setting | entries replaced | mean Dice before | mean Dice after | 30th pct | worse than before | "
          "folding % mean (max) | s/pair |")
    print("|" + " --- |" * 8)
    for name, rows in results.items():
        values = np.array(rows)
        replaced = ", ".join(f"{k}={'/'.join(v)}" for k, v in peers.ELASTIX_SETTINGS[name].items()) or "(defaults)"
        print(f"| {name} | {replaced} | {values[:, 0].mean():.3f} | {values[:, 1].mean():.3f} | "
              f"{np.percentile(values[:, 1], 30):.3f} | {int((values[:, 1] < values[:, 0]).sum())} | "
              f"{values[:, 2].mean():.3f} ({values[:, 2].max():.3f}) | {values[:, 3].mean():.1f} |")
    best = max(results, key=lambda name: np.mean([r[1] for r in results[name]]))
    print(f"\nstrongest: {best}")


if __name__ == "__main__":
    main()
