"""Why a write failed, said in one line: a full disk (found before the work where the size can be estimated) and
the error stacks C libraries print on stderr when a write fails."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Optional

from ..errors import PromptRegisterError

LOW_SPACE_BYTES = 1 << 20
"""A write that fails while its folder has less than this free failed for want of space (ITK's writers say only
"H5Dwrite failed"; they give no errno)."""


def free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return -1


def no_space_error(folder: Path, error: BaseException) -> Optional[PromptRegisterError]:
    """The one-line error for a write that failed because `folder`'s disk is full, or None if it was not that."""
    full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
    if not full and isinstance(error, (OSError, RuntimeError)):
        free = free_bytes(folder)
        full = 0 <= free < LOW_SPACE_BYTES
    if not full:
        return None
    return PromptRegisterError(f"no space left on the disk of {folder}; nothing was written. Free some space or "
                               "write to another folder.")


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse before the work when `folder`'s disk has less room than the outputs will take (`needed` bytes,
    an estimate): better now than after a long registration."""
    free = free_bytes(folder)
    if 0 <= free < needed:
        raise PromptRegisterError(f"not enough space for {what} in {folder}: it needs about {needed / 1e6:.0f} MB and "
                                  f"the disk has {free / 1e6:.0f} MB free. Free some space or write to another "
                                  "folder.")


@contextlib.contextmanager
def quiet_native_errors() -> Iterator[None]:
    """Hold back what C libraries print on the process's stderr (HDF5 prints a 50-line error stack when a write
    fails) and pass it on only if the block ends without a PromptRegisterError, which says it in one line."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr file descriptor (some embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except PromptRegisterError:
            raise
        except BaseException:
            _pass_on(held, saved)
            raise
        else:
            _pass_on(held, saved)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _pass_on(held, saved: int) -> None:
    held.seek(0)
    text = held.read()
    if text:
        os.write(saved, text)
