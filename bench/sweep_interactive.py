"""Choose the warm-started fit's learning rate and convergence tolerance on sweep pairs (bench/cases.SWEEP_PAIRS),
not on test pairs.

Per pair: four clicks (seeded points in the moving labels, classical backend, no marginalisation), a cold fit,
a fifth click, then the update fitted warm at each setting (learning rate x tolerance), and cold. Prints each
setting's seconds, iterations and how far its field lies from the cold fit's (mean and max mm);
interactive/session.WARM_LEARNING_RATE_MM and WARM_TOLERANCE are the fastest setting whose mean distance from the
cold fit stays under a tenth of the pairs' 1 mm voxel.

Run: python bench/sweep_interactive.py [--pairs 4] [--rates 1,0.5,0.25] [--tolerances 0.002]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import DATA, SWEEP_PAIRS  # noqa: E402
from promptregister.interactive.session import InteractiveSession  # noqa: E402
from promptregister.io import read_label_map, read_volume  # noqa: E402
from promptregister.methods.promptreg import PointPrompt  # noqa: E402
from promptregister.models import build_segmenter  # noqa: E402
from promptregister.register import options_from_flat  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--rates", default="1,0.5,0.25")
    parser.add_argument("--tolerances", default="0.002", help="warm fits' convergence tolerances (FitOptions)")
    args = parser.parse_args()
    settings = [(float(r), float(t)) for r in args.rates.split(",") for t in args.tolerances.split(",")]
    folder = DATA / "hippocampus_mr"
    results = {setting: [] for setting in settings}
    for fixed_case, moving_case in SWEEP_PAIRS[:args.pairs]:
        fixed = read_volume(folder / f"case{fixed_case}_t1.nii.gz")
        moving = read_volume(folder / f"case{moving_case}_t1.nii.gz")
        labels = read_label_map(folder / f"case{moving_case}_hippocampus.nii.gz")
        rng = np.random.default_rng(1)
        points = []
        for n in range(5):
            voxels = np.argwhere(labels.array == 1 + n % 2)
            kji = voxels[rng.integers(len(voxels))]
            points.append(PointPrompt(tuple(labels.geometry.index_to_physical(kji[::-1].astype(float)))))
        session = InteractiveSession(fixed, moving, build_segmenter("classical"),
                                     options_from_flat({"marginal_samples": 0}))
        for point in points[:4]:
            session.prompt([point])
        first = session.fit()
        session.prompt([points[4]])
        base = session.options
        cold = session.fit(warm=False)
        for rate, tolerance in settings:
            session.last_fit = first  # each setting warms up from the same fit
            session.options = replace(base, fit=replace(base.fit, learning_rate_mm=rate, tolerance=tolerance))
            started = time.perf_counter()
            warm = session.fit()
            seconds = time.perf_counter() - started
            iterations = sum(level.iterations for level in warm.fit.levels)
            difference = np.abs(warm.fit.field - cold.fit.field)
            results[(rate, tolerance)].append((seconds, difference.mean(), difference.max(), iterations))
            print(f"{fixed_case}<-{moving_case} rate {rate} tolerance {tolerance}: {seconds:.2f} s, {iterations} "
                  f"iterations, mean {difference.mean():.3f} mm, max {difference.max():.2f} mm", flush=True)
        session.options = base
    print("\n| warm learning rate (mm) | tolerance | fit update s (mean) | iterations (mean) | mean distance to cold "
          "fit (mm) | max (mm) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for rate, tolerance in settings:
        rows = np.array(results[(rate, tolerance)])
        print(f"| {rate} | {tolerance} | {rows[:, 0].mean():.2f} | {rows[:, 3].mean():.0f} | {rows[:, 1].mean():.3f} "
              f"| {rows[:, 2].max():.2f} |")


if __name__ == "__main__":
    main()
