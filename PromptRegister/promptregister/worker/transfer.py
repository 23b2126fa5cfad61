"""Files through the protocol, for a worker on another machine (reached by SSH's stdin/stdout, no port and no
shared folder): "upload" puts a file into the worker's private folder in chunks, "download" reads one of the
worker's own result files back in chunks.

Each chunk travels zlib-compressed and base64-encoded in one request or result line, with the SHA-256 of its
raw bytes; the last upload chunk carries the SHA-256 of the whole file, which the worker checks before the file
takes its name (until then it is a ".part" file that no request can use). A download answer carries the whole
file's SHA-256 too, which the client checks once it has every chunk. A download can only read files inside the
worker's own folder, so a client cannot read anything else on the remote machine.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from pathlib import Path
from typing import Any, Dict

from ..checksums import known_sha256, sha256_of
from .fields import shown
from .bad_requests import SAFE_NAME, ProtocolError

CHUNK_BYTES = 512 * 1024
"""Raw bytes per chunk: compressed and base64-encoded, a chunk stays well under the worker's 1 Mi-character
request line (base64 grows data by a third; zlib never grows it by more than a few bytes)."""



def pack(raw: bytes) -> Dict[str, str]:
    """One chunk as request or result fields."""
    return {"data": base64.b64encode(zlib.compress(raw, 6)).decode("ascii"),
            "chunk_sha256": hashlib.sha256(raw).hexdigest()}


def unpack(fields: Dict[str, Any]) -> bytes:
    """The raw bytes of a packed chunk; ProtocolError when it is damaged or holds more than CHUNK_BYTES (a line
    of a megabyte could otherwise inflate to a gigabyte in memory)."""
    try:
        inflate = zlib.decompressobj()
        raw = inflate.decompress(base64.b64decode(str(fields["data"]), validate=True), CHUNK_BYTES + 1)
    except (KeyError, ValueError, zlib.error) as error:
        raise ProtocolError("bad_request", f"a transfer chunk could not be decoded ({error})") from None
    if len(raw) > CHUNK_BYTES:
        raise ProtocolError("bad_request", f"a transfer chunk holds more than {CHUNK_BYTES} bytes; send smaller ones")
    if not inflate.eof:
        raise ProtocolError("bad_request", "a transfer chunk could not be decoded (its compressed data end early)")
    if hashlib.sha256(raw).hexdigest() != fields.get("chunk_sha256"):
        raise ProtocolError("bad_request", "a transfer chunk's checksum does not match its data; send it again")
    return raw




class Transfers:
    """The worker's side: uploads into <folder>/uploads, downloads from <folder>."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.uploads = self.folder / "uploads"

    def upload(self, request: Dict[str, Any]) -> Dict[str, Any]:
        name, offset = request.get("name"), request.get("offset")
        if not isinstance(name, str) or not SAFE_NAME.match(name):
            raise ProtocolError("bad_request", f'"upload" needs a plain file "name" (letters, digits, ".", "_", "-"); '
                                               f"got {shown(name)}")
        if not isinstance(offset, int) or offset < 0:
            raise ProtocolError("bad_request", '"upload" needs "offset": where this chunk starts in the file (bytes)')
        raw = unpack(request)
        self.uploads.mkdir(exist_ok=True)
        part = self.uploads / f"{name}.part"
        size = part.stat().st_size if part.exists() else 0
        if offset == 0:
            size = 0
        elif offset != size:
            raise ProtocolError("bad_request", f"upload of {name}: a chunk at byte {offset} but {size} bytes have "
                                               "arrived; send the chunks in order (from 0 to restart)")
        with open(part, "wb" if offset == 0 else "ab") as stream:
            stream.write(raw)
        size += len(raw)
        if not request.get("last"):
            return {"name": name, "received": size}
        expected = request.get("sha256")
        actual = sha256_of(part)
        if actual != expected:
            part.unlink()
            raise ProtocolError("bad_request", f"upload of {name}: the file's SHA-256 is {actual}, not the "
                                               f"{expected} sent; it was discarded, send it again")
        final = self.uploads / name
        part.replace(final)
        return {"name": name, "received": size, "path": str(final), "sha256": actual}

    def download(self, request: Dict[str, Any]) -> Dict[str, Any]:
        path, offset = request.get("path"), request.get("offset", 0)
        if not isinstance(path, str) or not isinstance(offset, int) or offset < 0:
            raise ProtocolError("bad_request", '"download" needs "path" (a file the worker wrote) and "offset"')
        try:
            resolved = Path(path).resolve()
            ours = self.folder.resolve() in resolved.parents and resolved.is_file()
        except (OSError, ValueError):  # a name too long for the file system, say
            ours = False
        if not ours:
            raise ProtocolError("bad_request", f"{shown(path)} is not a file of this worker's results; only files in "
                                               f"{self.folder} can be downloaded")
        size = resolved.stat().st_size
        whole = known_sha256(resolved)  # a file written again gets a new checksum
        with open(resolved, "rb") as stream:
            stream.seek(offset)
            raw = stream.read(CHUNK_BYTES)
        return {"path": path, "offset": offset, "size": size, "sha256": whole,
                "last": offset + len(raw) >= size, **pack(raw)}
