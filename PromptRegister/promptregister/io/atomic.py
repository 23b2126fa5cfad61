"""Write-to-temporary-then-rename, so an interrupted run never leaves half a file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, List, Optional

from ..errors import PromptRegisterError
from .write_errors import no_space_error

_MULTI_SUFFIXES = (".nii.gz", ".seg.nrrd", ".tar.gz")
STAGING_PREFIX = ".promptregister-"
_TEMPORARY = re.compile(r"\.(?:promptregister-|.+\.partial-)(\d+)-[A-Za-z0-9_]{8}(?:\..*)?")
"""Our temporary names: staging folders (.promptregister-<pid>-xxxxxxxx) and partial files
(.<name>.partial-<pid>-xxxxxxxx<suffix>); the writer's process id tells a stale one from one being written."""


def staging_folder(parent: Path) -> Path:
    """A new private folder in `parent` for files that are moved into place when all are complete."""
    return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=parent))


def partial_name(target: Path, suffix: str = "") -> Path:
    """A temporary name beside `target` that names this process (see remove_stale_temporaries)."""
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    return target.with_name(f".{stem}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def remove_stale_temporaries(folder: Path) -> List[Path]:
    """Remove our temporary files and folders in `folder` whose writer no longer runs (a run killed with SIGKILL,
    or a machine that lost power, cannot clean up after itself). Returns what was removed."""
    return remove_dead_writers(folder, _TEMPORARY)


def remove_dead_writers(folder: Path, name: "re.Pattern[str]") -> List[Path]:
    """Remove this user's entries of `folder` whose whole name matches `name`, a pattern whose first group is the
    process id of their writer, when that process no longer runs (symbolic links and other users' entries are
    left alone). Used for our temporary files here and for the worker's private folders."""
    removed: List[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = name.fullmatch(entry.name)
        if match is None or process_alive(int(match.group(1))):
            continue
        try:
            if entry.is_symlink() or entry.stat().st_uid != os.getuid():
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            pass  # already gone, or not ours to remove
    return removed


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs (someone else's counts as running: it cannot be asked, and is left alone)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process, or not a number we can ask about: leave it
    return True


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
    remove_stale_temporaries(target.parent if str(target.parent) else Path("."))
    temporary = partial_name(target, full_suffix(target))
    try:
        try:
            yield temporary
        except (OSError, RuntimeError) as error:
            full = no_space_error(target.parent if str(target.parent) else Path("."), error)
            if full is None:
                raise
            raise full from None
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
    partial = partial_name(target)
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
