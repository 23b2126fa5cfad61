"""Cohort throughput: the same pairs through `promptregister batch` on 1 and 2 local worker processes, in one
process (--workers 0), and through the command line run once per pair (`promptregister register`, a fresh
process each time, as a shell loop would).

Pairs: inter-subject hippocampus MR (../shared/data), three seeded clicks per label on the moving labels, the
default options; each run writes the same outputs (no report). Every configuration starts from an empty folder.
Reported per configuration: wall-clock seconds for the whole cohort, seconds per pair, the speed-up over the
command line loop, and the overhead per pair (wall per pair minus the mean time the pairs themselves took, as
their records say; for the loop, the record's time is the registration alone).

Run: python bench/batch.py [--pairs 12] [--model classical] [--configs cli,0,1,2]
Take the figures on an otherwise idle machine (two configurations never run at once here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hippocampus_mr"
SUBJECTS = ("001", "004", "007", "008", "014", "015", "019", "020", "024", "025", "033", "034", "036", "037", "039",
            "040", "042", "044", "046", "048")


def clicks(labels_path: Path, per_label: int = 3, seed: int = 0) -> str:
    from promptregister.io import read_label_map

    labels = read_label_map(labels_path)
    rng = np.random.default_rng(seed)
    points = []
    for label in (1, 2):
        voxels = np.argwhere(labels.array == label)
        for kji in voxels[rng.choice(len(voxels), per_label, replace=False)]:
            points.append(labels.geometry.index_to_physical(kji[::-1].astype(float)))
    return ";".join(",".join(f"{v:.3f}" for v in point) for point in points)


def write_manifest(folder: Path, count: int) -> Path:
    lines = ["id,fixed,moving,points"]
    for n in range(count):
        fixed, moving = SUBJECTS[(2 * n) % len(SUBJECTS)], SUBJECTS[(2 * n + 1) % len(SUBJECTS)]
        if n >= len(SUBJECTS) // 2:  # more pairs than disjoint couples: pair across the list
            fixed, moving = SUBJECTS[n % len(SUBJECTS)], SUBJECTS[(n + 7) % len(SUBJECTS)]
        lines.append(f'p{n:02d},{DATA / f"case{fixed}_t1.nii.gz"},{DATA / f"case{moving}_t1.nii.gz"},'
                     f'"{clicks(DATA / f"case{moving}_hippocampus.nii.gz")}"')
    path = folder / "pairs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_batch(manifest: Path, out: Path, workers: int, model: str) -> Dict[str, float]:
    command = [sys.executable, "-m", "promptregister", "batch", str(manifest), "--out-dir", str(out),
               "--workers", str(workers), "--model", model, "--no-report", "--quiet", "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"batch --workers {workers} failed:\n{done.stderr[-3000:]}")
    records = json.loads(done.stdout)
    return {"wall": wall, "pair_mean": statistics.mean(r["seconds"] for r in records), "pairs": len(records)}


def run_cli_loop(manifest: Path, out: Path, model: str) -> Dict[str, float]:
    from promptregister.batch import load_manifest

    rows = load_manifest(manifest).rows
    started = time.perf_counter()
    seconds = []
    for row in rows:
        command = [sys.executable, "-m", "promptregister", "register", "--fixed", str(row.fixed), "--moving",
                   str(row.moving), "--out-dir", str(out / row.id), "--model", model, "--quiet", "--json"]
        command += [f"--point={','.join(f'{v:.3f}' for v in point)}" for point in row.points]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"register failed for {row.id}:\n{done.stderr[-3000:]}")
        summary = json.loads(done.stdout)
        seconds.append(sum(summary.get("timings_s", {}).values()))
    wall = time.perf_counter() - started
    return {"wall": wall, "pair_mean": statistics.mean(seconds), "pairs": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--model", default="classical")
    parser.add_argument("--configs", default="cli,0,1,2", help="cli (the loop) and worker counts, comma-separated")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        manifest = write_manifest(folder, args.pairs)
        results: Dict[str, Dict[str, float]] = {}
        for config in args.configs.split(","):
            out = folder / f"out-{config}"
            print(f"running {config} ...", file=sys.stderr, flush=True)
            results[config] = (run_cli_loop(manifest, out, args.model) if config == "cli"
                               else run_batch(manifest, out, int(config), args.model))
        print(f"{args.pairs} hippocampus pairs (64^3), model {args.model}, 3 clicks per label, default options, "
              f"{os.cpu_count()} cores")
        print("| how | wall s | s per pair | pair's own s (mean) | overhead s per pair | speed-up vs CLI loop |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        loop = results.get("cli")
        names = {"cli": "`register` once per pair", "0": "`batch --workers 0` (one process)"}
        for config, figures in results.items():
            per_pair = figures["wall"] / figures["pairs"]
            label = names.get(config, f"`batch --workers {config}`")
            speedup = f"{loop['wall'] / figures['wall']:.2f}" if loop else "-"
            # overhead: the wall time per pair not spent inside pairs (start-up, imports, scheduling); with N
            # workers the pairs overlap N at a time
            workers = max(1, int(config)) if config != "cli" else 1
            overhead = per_pair - figures["pair_mean"] / workers
            print(f"| {label} | {figures['wall']:.1f} | {per_pair:.2f} | {figures['pair_mean']:.2f} | "
                  f"{overhead:.2f} | {speedup} |")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":  # Dask's local workers are spawned processes: they import this file again
    main()
