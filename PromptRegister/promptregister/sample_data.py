"""The sample pair that ships with PromptRegister: two hippocampus MR subjects and their labels (about 230 kB,
CC BY-SA 4.0; see samples/LICENCE.md), so that the quick start and the basic tests need nothing but a clone.

`promptregister sample-data DIR` writes them out; the Slicer module registers them with Slicer's Sample Data
module. The files are checked against their SHA-256 before they are used, so a damaged copy is an error.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Dict

from .errors import PromptRegisterError

FOLDER = Path(__file__).resolve().parent / "samples"
LICENCE = "LICENCE.md"
FILES: Dict[str, str] = {
    "case001_t1.nii.gz": "ce63274282866c4749d898c63ff19854b24e7c0dec5b99610b570421515932bb",
    "case001_hippocampus.nii.gz": "b11963e88a8d67c72734f57fe023a33c467ddbd2cc6c53a9ed9b6b12f63febfd",
    "case004_t1.nii.gz": "eafc3a3ab574cbf4a9e31b64fe6dd40bb5aec63fec10de83060571988abc08fd",
    "case004_hippocampus.nii.gz": "40206f30be2582dee4de18ab2db414bcbf4377ff9ea675590fec95d84aad75a7",
}
"""File name -> SHA-256 of the byte-identical copy of the shared data's file."""
FIXED, MOVING = "case001", "case004"
"""The quick start registers subject 004 (moving) to subject 001 (fixed)."""
QUICK_START_POINTS = ("-32,-39,26", "-36,-39,25", "-31,-37,28", "-26,-33,25", "-26,-28,27", "-28,-31,26")
"""The README's six clicks (LPS mm) inside the two hippocampus labels of subject 004."""


def sample_path(name: str) -> Path:
    """A bundled file, verified; an error that says what is wrong when it is missing or damaged."""
    if name not in FILES:
        raise PromptRegisterError(f"no sample file {name!r}; the samples are {', '.join(FILES)}")
    path = FOLDER / name
    if not path.is_file():
        raise PromptRegisterError(f"the sample file {path} is missing from this installation; reinstall "
                                  "PromptRegister or clone the repository again")
    if hashlib.sha256(path.read_bytes()).hexdigest() != FILES[name]:
        raise PromptRegisterError(f"the sample file {path} is damaged (its SHA-256 does not match); reinstall "
                                  "PromptRegister or check out the file again")
    return path


def write_sample_data(folder: str | os.PathLike) -> Dict[str, Path]:
    """Copy the sample pair and its licence note into `folder` (created if needed); existing files with the
    same content are kept, different ones are an error. Returns {name: path}."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PromptRegisterError(f"cannot create {folder} ({error.strerror}); choose another folder") from None
    written = {}
    for name in [*FILES, LICENCE]:
        source = sample_path(name) if name in FILES else FOLDER / LICENCE
        target = folder / name
        if target.exists():
            if target.read_bytes() != source.read_bytes():
                raise PromptRegisterError(f"{target} exists with other content; choose an empty folder")
        else:
            partial = target.with_name(f".{name}.partial")
            shutil.copyfile(source, partial)
            partial.replace(target)
        written[name] = target
    return written
