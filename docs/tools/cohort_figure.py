"""Render the user guide's picture of a cohort summary: the box plot of summary.html, from a real batch run.

Twelve inter-subject hippocampus pairs of ../shared/data (bench/batch.py's, with their label maps), three seeded
clicks per label, the default options, `batch` on two local workers. The box plot is copied out of the run's
summary.html as docs/images/cohort_dice.svg (the page itself links pair reports that are not kept).

    python docs/tools/cohort_figure.py [--pairs 12] [--model classical] [--out docs/images]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from batch import DATA, write_manifest  # noqa: E402  (the benchmark's pairs and clicks)
from promptregister.batch import BatchSettings, run  # noqa: E402


def with_labels(manifest: Path) -> Path:
    """The benchmark's manifest with each image's label map beside it."""
    lines = manifest.read_text().splitlines()
    out = [lines[0] + ",fixed_labels,moving_labels"]
    for line in lines[1:]:
        fixed, moving = re.findall(r"case(\d+)_t1\.nii\.gz", line)
        out.append(f"{line},{DATA / f'case{fixed}_hippocampus.nii.gz'},{DATA / f'case{moving}_hippocampus.nii.gz'}")
    path = manifest.with_name("pairs_labels.csv")
    path.write_text("\n".join(out) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--model", default="classical")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cohort-figure-") as folder:
        manifest = with_labels(write_manifest(Path(folder), args.pairs))
        summary = run(manifest, Path(folder) / "cohort", settings=BatchSettings(model=args.model, report=False),
                      workers=2)
        page = summary.html.read_text()
    svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cohort_dice.svg").write_text(svg + "\n")
    before = sum(r["dice_before"] for r in summary) / len(summary)
    after = sum(r["dice_after"] for r in summary) / len(summary)
    print(f"wrote {args.out / 'cohort_dice.svg'}: {len(summary)} pairs, mean Dice {before:.3f} -> {after:.3f}")


if __name__ == "__main__":  # Dask's local workers import this file again
    main()
