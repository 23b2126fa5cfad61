"""`promptregister worker`: the background worker (JSON lines on stdin and stdout)."""

from __future__ import annotations

import argparse


def add_worker_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "worker", help="serve the JSON-lines worker protocol on stdin/stdout (what the Slicer module starts)",
        description="The background worker (same as `python -m promptregister.worker`): one JSON request per line "
                    "on stdin, events on stdout, logs on stderr; no network port. docs/developer-guide.md has the "
                    "protocol.")
    p.set_defaults(handler=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    from ..worker.server import main as serve

    return serve()


# -- fit ---------------------------------------------------------------------------
