"""The `promptregister` command's entry point, kept apart from the command line package so that a Ctrl-C while
that package is still being imported (the command's first tenth of a second) ends with one line, not a traceback."""

import sys


def main() -> int:
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        print("interrupted; nothing was done", file=sys.stderr)
        return 130
    return run()
