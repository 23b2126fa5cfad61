"""The worker's private folder, and clearing the folders of workers that died without removing theirs.

A worker killed by a signal (or by Slicer closing abruptly) cannot run its clean-up, so each folder carries its
owner's process id in its name: a new worker removes the folders of this user whose process is gone. Folders of
running workers, of other users and anything else in the temporary folder are left alone.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import List, Optional

from ..io.atomic import remove_dead_writers

PREFIX = "promptregister-worker-"
NAME = re.compile(rf"{PREFIX}(\d+)-[A-Za-z0-9_]+")


def make_private_folder(parent: Optional[Path] = None) -> Path:
    """A new folder only this user can read (mode 0700), named after this process."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))


def remove_stale_folders(parent: Optional[Path] = None) -> List[Path]:
    """Remove this user's worker folders whose process no longer runs; returns what was removed."""
    return remove_dead_writers(Path(parent or tempfile.gettempdir()), NAME)
