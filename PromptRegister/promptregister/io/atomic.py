"""Write-to-temporary-then-rename, so an interrupted run never leaves half a file."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

from ..errors import PromptRegisterError

_MULTI_SUFFIXES = (".nii.gz", ".seg.nrrd", ".tar.gz")


def full_suffix(path: Path) -> str:
    """The file type suffix, keeping compound ones such as '.nii.gz'."""
    name = path.name.lower()
    for suffix in _MULTI_SUFFIXES:
        if name.endswith(suffix):
            return path.name[-len(suffix):]
    return path.suffix


def check_writable(path: Path) -> None:
    """Fail early, with a clear message, when `path` cannot be written."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise PromptRegisterError(f"Cannot write {path}: the folder {folder} does not exist. Create it first.")
    if not folder.is_dir():
        raise PromptRegisterError(f"Cannot write {path}: {folder} is not a folder.")
    if not os.access(folder, os.W_OK):
        raise PromptRegisterError(f"Cannot write {path}: no permission to write in {folder}.")
    if path.is_dir():
        raise PromptRegisterError(f"Cannot write {path}: it is a folder.")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` on success.

    The temporary file keeps the real suffix so that writers that choose the
    format from the file name (SimpleITK) work unchanged. On any exception the
    temporary file is removed and the destination is left untouched.
    """
    target = Path(path)
    check_writable(target)
    suffix = full_suffix(target)
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    temporary = target.with_name(f".{stem}.partial-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield temporary
        if not temporary.exists():
            raise PromptRegisterError(f"Writing {target} produced no file.")
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()
