"""Write-to-temporary-then-rename, so an interrupted run never leaves half a file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional

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


def write_verified(source: BinaryIO, target: Path, sha256: Optional[str], mismatch: Callable[[str], str],
                   progress: Optional[Callable[[int], None]] = None) -> Path:
    """Stream `source` into `target` through a temporary file, renamed into place only when its SHA-256 is
    `sha256` (None: any content); otherwise PromptRegisterError(mismatch(actual digest)) and nothing is left.
    `progress(bytes so far)` after each block. For downloaded and unpacked weights."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    digest, done = hashlib.sha256(), 0
    try:
        with open(partial, "wb") as out:
            for block in iter(lambda: source.read(1 << 20), b""):
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(done)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise PromptRegisterError(mismatch(digest.hexdigest()))
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()
    return target
