"""Command line: `promptregister register | batch | fit | warp | evaluate | weights | sample-data | worker | web`, one
module per command below this one (console.py and values.py at the bottom).

Every user-fixable problem ends with a one-line `error: ...` and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Optional, Sequence

from .. import __version__
from ..errors import PromptRegisterError
from .batch import add_batch_command
from .evaluate import add_evaluate_command
from .fit import add_fit_command
from .register import add_register_command, join_negative_points
from .sample import add_sample_data_command
from .warp import add_warp_command
from .web import add_web_command
from .weights import add_weights_command
from .worker import add_worker_command

EXAMPLES = """examples:
  the main job: register a moving image to a fixed one from three clicks (or --text, or --auto):
  promptregister register --fixed F.nii.gz --moving M.nii.gz --point -20,-35,24 --point -22,-38,27 --out-dir out
  promptregister register --help          (every option, grouped)

  a cohort, one pair per manifest row, on several processes or a Dask cluster (see batch --help):
  promptregister batch pairs.csv --out-dir cohort --workers 2

  the dense stage alone, from label maps you already have:
  promptregister fit --fixed F.nii.gz --moving M.nii.gz \\
      --fixed-labels FL.nii.gz --moving-labels ML.nii.gz --out transform.h5
  promptregister warp --reference F.nii.gz --moving M.nii.gz --transform transform.h5 --out warped.nii.gz
  promptregister evaluate --fixed-labels FL.nii.gz --moving-labels ML.nii.gz --transform transform.h5

  the browser app (needs the web extra), on the bundled sample pair:
  promptregister web --sample

Coordinates are ITK LPS millimetres. A transform maps fixed points to moving
points (ITK's resampling convention; Slicer loads it as the grid transform's
FromParent), so `warp` resamples the moving image onto the fixed grid.
"""


HEAVY_COMMANDS = ("batch", "fit", "register", "worker")
"""Commands that run PyTorch for long enough to be worth restarting under tcmalloc (see runtime.py)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or a system's stop) taken like Ctrl-C, so the same clean-up runs: temporary files
    are removed and nothing half-written is left."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: Optional[Sequence[str]] = None) -> int:
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        try:
            signal.signal(signal.SIGTERM, _terminate)
        except ValueError:  # not the main thread (main() called from a test thread or an embedding program)
            pass
    try:
        return _run(argv)
    except PromptRegisterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Terminated:
        print("stopped (SIGTERM); no output was written", file=sys.stderr)
        return 143
    except KeyboardInterrupt:  # also while the parser imports the models, in the first second
        print("interrupted; no output was written", file=sys.stderr)
        return 130


def _run(argv: Optional[Sequence[str]]) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if argv is None and arguments and arguments[0] in HEAVY_COMMANDS:
        from ..runtime import reexec_with_tcmalloc

        reexec_with_tcmalloc("promptregister", arguments)
    parser = build_parser()
    args = parser.parse_args(join_negative_points(arguments))
    if not getattr(args, "handler", None):
        parser.print_help()
        return 1
    return int(args.handler(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptregister",
        description="Training-free, prompt-driven image registration: ROI pairs -> displacement field.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"promptregister {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    add_register_command(commands)
    add_batch_command(commands)
    add_fit_command(commands)
    add_warp_command(commands)
    add_evaluate_command(commands)
    add_weights_command(commands)
    add_sample_data_command(commands)
    add_worker_command(commands)
    add_web_command(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
