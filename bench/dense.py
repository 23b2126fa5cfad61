"""Benchmark of the dense stage against elastix and ANTs, measured in the same run.

For each case (hippocampus MR pairs; MNI152 on a 200x200x96 grid with 5 ROIs and
a known deformation) and each method, prints label Dice, HD95, folding, wall
time of the registration call (after a warm-up on a tiny pair, so one-time
start-up costs are left out for every method), peak memory of the process, and
the time ratio against our dense stage. "ours (labels)" fits the ROI pairs alone (the dense stage's own
defaults); "ours (labels + image term)" adds what `register` adds (the image term, the folding penalty and
the repair). Each run is a fresh process. Peers get
the same information (the label maps) or only the images, which is what a user
would otherwise run.

Run: python bench/dense.py [--pairs N] [--no-peers] [--no-mni]
(needs the bench extra: pip install -e ".[bench]")
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import threading
import time
from typing import Dict, List

import numpy as np

METHODS = ["ours (labels)", "ours (labels + image term)", "elastix B-spline (labels)", "ANTs SyN (labels)", "elastix B-spline (images)", "ANTs SyN (images)"]


def _build_case(name: str, index: int):
    import cases

    if name == "hippocampus":
        return cases.hippocampus_case(*cases.HIPPOCAMPUS_PAIRS[index])
    return cases.mni_case()


class _RssSampler:
    """Highest resident memory of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self) -> "_RssSampler":
        self.start_mb = self.peak_mb = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _run(name: str, index: int, method: str) -> Dict[str, float]:
    """One registration in a fresh process, so peak memory belongs to it alone."""

    from promptregister.io.transforms import displacement_field_transform
    from promptregister.metrics import dice, hausdorff95, jacobian_stats
    from promptregister.warp import warp_volume

    case = _build_case(name, index)
    _warm_up(method)
    if method.startswith("ours"):
        from promptregister.dense import fit_transform
        from promptregister.roipairs import RoiPairs

        pairs = RoiPairs.from_label_maps(case.fixed_labels, case.moving_labels)
        if "image term" in method:  # register's dense stage: the image term, the folding penalty and repair
            from promptregister.register import RegisterOptions

            options, images = RegisterOptions().fit, (case.fixed, case.moving)
        else:
            options, images = None, None
        with _RssSampler() as memory:
            started = time.perf_counter()
            field = fit_transform(pairs, options, images=images).field
            seconds = time.perf_counter() - started
    else:
        import peers

        on_labels = "(labels)" in method
        fixed = case.fixed_labels if on_labels else case.fixed
        moving = case.moving_labels if on_labels else case.moving
        runner = peers.elastix_bspline if method.startswith("elastix") else peers.ants_syn
        with _RssSampler() as memory:
            field, seconds = runner(fixed.with_array(fixed.array.astype(np.float32)), moving.with_array(moving.array.astype(np.float32)), on_labels)
    geometry = case.fixed_labels.geometry
    warped = warp_volume(case.moving_labels, displacement_field_transform(field, geometry), geometry, labels=True).array
    labels = sorted(set(np.unique(case.fixed_labels.array)) - {0})
    row = {
        "dice": float(np.mean([dice(case.fixed_labels.array == l, warped == l) for l in labels])),
        "hd95": float(np.nanmean([hausdorff95(case.fixed_labels.array == l, warped == l, geometry) for l in labels])),
        "folding": jacobian_stats(field, geometry)["folding_percent"],
        "seconds": seconds,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "added_mb": memory.peak_mb - memory.start_mb,
    }
    if case.truth is not None:
        inside = case.fixed_labels.array > 0
        row["field_error"] = float(np.median(np.linalg.norm(field - case.truth, axis=-1)[inside]))
    return row


def _warm_up(method: str) -> None:
    """Run the method once on a tiny pair so one-time start-up costs are not timed."""
    from promptregister.geometry import Geometry
    from promptregister.volume import Volume

    geometry = Geometry.create((24, 24, 24))
    fixed = np.zeros(geometry.shape, np.float32)
    fixed[6:16, 6:16, 6:16] = 1
    moving = np.roll(fixed, 2, axis=0)
    if method.startswith("ours"):
        from promptregister.dense import FitOptions, fit_transform
        from promptregister.roipairs import RoiPairs

        labels = lambda a: Volume(a.astype(np.int32), geometry)
        fit_transform(RoiPairs.from_label_maps(labels(fixed), labels(moving)), FitOptions(max_iterations=5))
    else:
        import peers

        runner = peers.elastix_bspline if method.startswith("elastix") else peers.ants_syn
        runner(Volume(fixed, geometry), Volume(moving, geometry), True)


def _before(name: str, index: int) -> float:
    case = _build_case(name, index)
    labels = sorted(set(np.unique(case.fixed_labels.array)) - {0})
    from promptregister.metrics import dice

    return float(np.mean([dice(case.fixed_labels.array == l, case.moving_labels.array == l) for l in labels]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="hippocampus pairs (at most 5)")
    parser.add_argument("--no-peers", action="store_true", help="only our dense stage")
    parser.add_argument("--no-mni", action="store_true", help="skip the 200x200x96 case")
    args = parser.parse_args()
    methods = [m for m in METHODS if m.startswith("ours")] if args.no_peers else METHODS
    suites = [("hippocampus", list(range(min(args.pairs, 5))))] + ([] if args.no_mni else [("mni", [0])])
    context = multiprocessing.get_context("spawn")
    print("| case | method | Dice before | Dice after | HD95 (mm) | folding (%) | field error (mm) | time (s) | process peak (MB) | added by the call (MB) | time / ours |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, indices in suites:
        with context.Pool(1) as pool:
            before = float(np.mean([pool.apply(_before, (name, i)) for i in indices]))
        ours_seconds = None
        for method in methods:
            rows: List[Dict[str, float]] = []
            for index in indices:
                with context.Pool(1, maxtasksperchild=1) as pool:
                    rows.append(pool.apply(_run, (name, index, method)))
            mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
            if ours_seconds is None:
                ours_seconds = mean["seconds"]
            label = "hippocampus MR, mean of %d pairs" % len(indices) if name == "hippocampus" else "MNI152 200x200x96, 5 ROIs, known field"
            error = "%.2f" % mean["field_error"] if "field_error" in mean else "-"
            print(
                f"| {label} | {method} | {before:.3f} | {mean['dice']:.3f} | {mean['hd95']:.2f} | {mean['folding']:.3f} | {error} | "
                f"{mean['seconds']:.1f} | {mean['peak_mb']:.0f} | {mean['added_mb']:.0f} | {mean['seconds'] / ours_seconds:.1f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
