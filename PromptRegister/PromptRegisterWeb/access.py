"""Who may connect and which files the browser app may read: checked before the server starts or a file is read.

- The server binds 127.0.0.1 unless the user names another address; the page then needs a random token, printed
  at start (the URL carries it, and the web socket refuses a connection without it). Switching the token off is
  refused unless the address is the machine's own (loopback).
- Files are read from the folder the user named (--data-dir) and nowhere else: the browser sees names, never
  paths, and a name that leads out of the folder (.., links, absolute paths) is refused.
- Uploads are capped in size and written into the server's private folder.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import List, Optional

from promptregister.errors import PromptRegisterError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
"""The volume files the app lists and accepts (what SimpleITK and Slicer's volume reader both read)."""
UPLOAD_LIMIT_MB = 512
"""The default cap on one uploaded file: a 512 x 512 x 400 CT in float32 is 420 MB."""


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (127.0.0.0/8, ::1 or the name localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def access_token(host: str, token: Optional[str], no_token: bool) -> Optional[str]:
    """The token the page must present: the user's, a new random one, or None (--no-token, loopback only)."""
    if no_token:
        if not is_loopback(host):
            raise PromptRegisterError(
                f"--no-token is refused with --host {host}: any machine that reaches {host} could use the app and "
                "read its volumes. Keep the token (printed at start), or bind 127.0.0.1 and forward the port over "
                "SSH (docs/user-guide.md, 'In the browser')")
        return None
    if token is not None:
        if len(token) < 16:
            raise PromptRegisterError("the access token must be at least 16 characters long (or leave --token out "
                                      "for a random one)")
        return token
    return secrets.token_urlsafe(24)


def image_name(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


class DataFolder:
    """The one folder the app reads volumes from; the browser names files relative to it."""

    def __init__(self, root: Optional[Path]):
        if root is not None:
            root = Path(root).expanduser()
            if not root.is_dir():
                raise PromptRegisterError(f"--data-dir {root} is not a folder: name the folder that holds the "
                                          "volumes to register")
            root = root.resolve()
        self.root = root

    def names(self, limit: int = 2000) -> List[str]:
        """The volume files under the folder (relative names, sorted; links that lead out are left out)."""
        if self.root is None:
            return []
        found = []
        for path in sorted(self.root.rglob("*")):
            if len(found) >= limit:
                break
            if path.is_file() and image_name(path):
                try:
                    found.append(self.resolve(str(path.relative_to(self.root))).relative_to(self.root).as_posix())
                except PromptRegisterError:
                    continue
        return found

    def resolve(self, name: str) -> Path:
        """The file `name` names inside the folder; anything else (outside it, not a volume, missing) is refused."""
        if self.root is None:
            raise PromptRegisterError("no data folder was given: start the app with --data-dir DIR to open files "
                                      "from DIR, or upload them")
        if not name or Path(name).is_absolute() or "\\" in name:
            raise PromptRegisterError(f"{name!r} is not a file name inside the data folder")
        path = (self.root / name).resolve()
        if path != self.root and self.root not in path.parents:
            raise PromptRegisterError(f"{name!r} is outside the data folder: only files under --data-dir are read")
        if not path.is_file():
            raise PromptRegisterError(f"{name!r} is not a file in the data folder")
        if not image_name(path):
            raise PromptRegisterError(f"{name!r} is not a volume file ({', '.join(IMAGE_SUFFIXES)})")
        return path


def check_upload(name: str, size: int, limit_mb: float = UPLOAD_LIMIT_MB) -> str:
    """A safe file name for an uploaded volume (its base name only), or a refusal saying why."""
    base = Path(str(name).replace("\\", "/")).name
    if not base or base in (".", "..") or not image_name(Path(base)):
        raise PromptRegisterError(f"{name!r} is not a volume file ({', '.join(IMAGE_SUFFIXES)})")
    if size > limit_mb * 1024 * 1024:
        raise PromptRegisterError(f"{base} is {size / 1024 / 1024:.0f} MB, over the upload limit of {limit_mb:.0f} MB "
                                  "(start the app with a larger --max-upload-mb, or put the file under --data-dir)")
    return base
