"""The worker's private folder, and clearing the folders of workers that died without removing theirs.

A worker killed by a signal (or by Slicer closing abruptly) cannot run its clean-up, so each folder carries its
owner's process id in its name: a new worker removes the folders of this user whose process is gone. Folders of
running workers, of other users and anything else in the temporary folder are left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional

from ..io.atomic import process_alive

PREFIX = "promptregister-worker-"
NAME = re.compile(rf"^{PREFIX}(\d+)-[A-Za-z0-9_]+$")


def make_private_folder(parent: Optional[Path] = None) -> Path:
    """A new folder only this user can read (mode 0700), named after this process."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))


def remove_stale_folders(parent: Optional[Path] = None) -> List[Path]:
    """Remove this user's worker folders whose process no longer runs; returns what was removed."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = NAME.match(entry.name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            if entry.is_symlink() or not entry.is_dir() or entry.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not process_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed
