"""The flat names of register's settings: one table for the command line, the worker's requests, batch manifests
and the panel.

Each entry says which RegisterOptions parts a name sets and, for a setting the command line offers, its help line
and argument group; the command line builds its flags from this table (cli/register.py), so a setting's name,
default and help are written once. Defaults are never written here: they are the option classes' (and a preset's).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, Tuple

from ..errors import PromptRegisterError
from .fit import IMAGE_METRICS, LINEAR_MODELS
from .methods import MASK_CHOICES
from .register import PRESETS, RegisterOptions

GROUPS = ("finding the region pairs", "the displacement field", "safeguards")
"""The command line's argument groups, in the order --help lists them."""

MATCHING, FIELD, SAFEGUARDS = GROUPS


@dataclass(frozen=True)
class FlatOption:
    """One setting by its flat name.

    Attributes:
        targets: the RegisterOptions parts it sets ("samreg", "fit", ...; "" is RegisterOptions itself).
        attribute: the field it sets on each of them.
        help: the command line's help ("{default}" is replaced by the effective default); "" offers no flag
            (the setting is for requests, manifests and sweeps).
        group: the command line's argument group (GROUPS).
        flag: the flag when it is not the name with dashes.
        choices: the values the flag accepts, when they are few.
        metavar: the value's name in --help (a name ending in _mm: MM).
    """

    targets: Tuple[str, ...]
    attribute: str
    help: str = ""
    group: str = MATCHING
    flag: str = ""
    choices: Tuple[Any, ...] = ()
    metavar: str = ""


FLAT_OPTIONS: Dict[str, FlatOption] = {
    "search_mm": FlatOption(("samreg", "promptreg", "tell2reg"), "search_mm",
                            "fixed slices within +/- this distance of the moving slice are searched (default {default})"),
    "threshold": FlatOption(("samreg", "tell2reg"), "threshold",
                            "minimum cosine similarity of a pair for --auto and --text (default {default})"),
    "pairs_per_slice": FlatOption(("samreg", "tell2reg"), "pairs_per_slice",
                                  "--auto and --text: keep the K most similar pairs of each moving slice "
                                  "(default {default})", metavar="K"),
    "slice_step": FlatOption(("samreg", "tell2reg"), "slice_step",
                             "use every n-th moving slice for --auto and --text (default: {default} for --auto, 1 for "
                             "--text and with --preset paper)"),
    "auto_slice_step": FlatOption(("samreg",), "slice_step"),
    "moving_slices": FlatOption(("samreg", "tell2reg"), "moving_slices",
                                "only these moving slices (a slab, inclusive) for --auto and --text",
                                metavar="FIRST:LAST"),
    "max_pairs": FlatOption(("samreg",), "max_pairs",
                            "--auto: keep at most N pairs in all, spread over the slices; bounds the fit's time "
                            "(default {default})", metavar="N"),
    "one_to_many": FlatOption(("samreg",), "one_to_many",
                              "SAMReg: let several moving regions pair with the same fixed region (default {default})"),
    "box_threshold": FlatOption(("tell2reg",), "box_threshold",
                                "Tell2Reg: keep detector boxes scoring above this (default {default})"),
    "text_threshold": FlatOption(("tell2reg",), "text_threshold",
                                 "Tell2Reg: phrase-token score threshold (default {default})"),
    "marginal_samples": FlatOption(("promptreg",), "marginal_samples",
                                   "PromptReg marginalisation transforms, 0 = off (default {default})"),
    "search_stride": FlatOption(("promptreg",), "search_stride",
                                "PromptReg: search every N-th fixed slice, then around the best one; 1 searches every "
                                "slice (default {default})", metavar="N"),
    "mask_choice": FlatOption(("promptreg",), "mask_choice",
                              "PromptReg's ROI among SAM's three masks: 'score' (the paper's: the top-scoring one) or "
                              "'part' (the smallest); default {default}, or the preset's", choices=MASK_CHOICES),
    "closeup_mm": FlatOption(("promptreg",), "closeup_mm",
                             "PromptReg after the image registration: segment each click on a window this wide around "
                             "it (and around where the images put it) instead of the whole slice; 0 = whole slices "
                             "(default {default}; docs/register-sweep.md)"),
    "sigma_mm": FlatOption(("promptreg",), "sigma_mm"),
    "grow_mm": FlatOption(("growth",), "max_mm",
                          "grow each slice pair through neighbouring slices of both images, up to this many mm each "
                          "way, into 3D regions (default {default}, or the preset's; 0 = one slice)"),
    "guide_mm": FlatOption(("",), "guide_mm",
                           "PromptReg after the image registration: search a click's counterpart within this distance "
                           "of where the images put it (default {default})"),
    "image_linear": FlatOption(("",), "image_linear",
                               "the image registration's linear start, found on the images (default {default}, or the "
                               "preset's)", FIELD, choices=LINEAR_MODELS),
    "grid_spacing_mm": FlatOption(("fit",), "grid_spacing_mm",
                                  "B-spline control point spacing in mm (default: the preset's, {default} mm; 3 mm for "
                                  "--preset multimodal)", FIELD, flag="--grid-spacing", metavar="MM"),
    "smoothness": FlatOption(("fit",), "smoothness",
                             "weight of the regulariser: higher = a smoother, stiffer field (default {default})", FIELD),
    "image_weight": FlatOption(("fit",), "image_weight",
                               "weight of the image term (see --image-metric), 0 = off (default {default}, or the "
                               "preset's)", FIELD),
    "image_metric": FlatOption(("fit",), "image_metric",
                               "the image term's similarity: 'lncc' (local correlation, same modality) or 'mind' "
                               "(MIND-SSC descriptors, between modalities: MR to ultrasound, CT to MR); default "
                               "{default}, or the preset's", FIELD, choices=IMAGE_METRICS),
    "image_region": FlatOption(("fit",), "image_region"),
    "max_image_voxels": FlatOption(("fit",), "max_image_voxels"),
    "folding_weight": FlatOption(("fit",), "folding_weight",
                                 "weight of the folding penalty, 0 = off (default {default}, or the preset's)", FIELD),
    "unfold": FlatOption(("fit",), "unfold",
                         "after the fit, repair the voxels whose Jacobian determinant is still <= 0, so the transform "
                         "never folds (default {default}; off in the paper preset)", FIELD),
    "regulariser_volume_mm3": FlatOption(("fit",), "regulariser_volume_mm3"),
    "linear": FlatOption(("fit",), "linear"),
    "seed": FlatOption(("promptreg", "fit", ""), "seed",
                       "seeds sampled points and marginalisation, so that a rerun gives the same pairs "
                       "(default {default})", FIELD),
    "on_worse": FlatOption(("",), "on_worse",
                           "when the registered image agrees with the fixed one less than before: 'warn' (write the "
                           "result and say so) or 'keep' (write the identity, the images as they were, and say so); "
                           "default {default}, or the preset's", SAFEGUARDS, choices=("warn", "keep")),
    "drop_below": FlatOption(("",), "drop_below",
                             "with the image term, drop pairs whose regions overlap by less than this Dice after the "
                             "fit and fit again without them; 0 = never (default {default}, or the preset's)",
                             SAFEGUARDS),
    "image_first": FlatOption(("",), "image_first"),
    "pair_weight": FlatOption(("",), "pair_weight"),
    "doubtful_below": FlatOption(("",), "doubtful_below"),
}


def flat_default(name: str, preset: str = "default") -> Any:
    """The value a flat name has when it is not given: the preset's, else the option classes' default."""
    option = FLAT_OPTIONS[name]
    values = options_from_flat({}, preset=preset)
    target = option.targets[0]
    return getattr(getattr(values, target) if target else values, option.attribute)


def options_from_flat(values: Dict[str, object], preset: str = "default", device: str = "auto") -> RegisterOptions:
    """RegisterOptions from flat names (see FLAT_OPTIONS), as the CLI and the worker's requests give them,
    on top of a preset (PRESETS); an unknown name is an error that lists the known ones. The compute device is
    not a method option: it comes with the models (--device, a request's "device") and reaches the fit here."""
    if preset not in PRESETS:
        raise PromptRegisterError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if "device" in values:
        raise PromptRegisterError("the device is not a method option: give it beside the options (--device, a "
                                  "request's \"device\", BatchSettings(device=...))")
    options = RegisterOptions()
    options.fit = replace(options.fit, device=device)
    for name, value in {**PRESETS[preset], **values}.items():
        if name not in FLAT_OPTIONS:
            raise PromptRegisterError(f"unknown option {name!r}; known: {', '.join(sorted(FLAT_OPTIONS))}")
        option = FLAT_OPTIONS[name]
        for target in option.targets:
            if target:
                setattr(options, target, replace(getattr(options, target), **{option.attribute: value}))
            else:
                setattr(options, option.attribute, value)
    options.__post_init__()
    return options
