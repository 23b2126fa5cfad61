"""What ITK's NIfTI reader lets through silently, found before the image is used.

ITK reads a truncated .nii or .nii.gz without a word (the missing voxels become 0), turns NaN and infinite voxels
into 0, and reads a zero pixel spacing as 1 mm and a negative one as its absolute value. NRRD and MetaImage readers
refuse the same files. So for NIfTI files the header is read here and the voxel data streamed once, before
SimpleITK sees the file; the cost is one decompression (about 0.1 s for a 256^3 short volume).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Tuple

import numpy as np

from ..errors import PromptRegisterError

#: NIfTI datatype codes -> numpy dtypes (without byte order); complex and RGB types are left to ITK.
_DATATYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8",
              1280: "u8"}
_CHUNK = 1 << 20
_LAYOUTS = {348: (40, 70, 76, 108, "8h", "8f", "f"), 540: (16, 12, 104, 168, "8q", "8d", "q")}
"""NIfTI-1 and NIfTI-2 headers by their size: byte offsets of dim, datatype and bitpix, pixdim and vox_offset,
then the struct codes of dim, pixdim and vox_offset (a float in NIfTI-1, an int64 in NIfTI-2)."""


def is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".nii", ".nii.gz", ".hdr", ".hdr.gz"))


def check_nifti(path: Path, allow_nan: bool = False) -> None:
    """Refuse a NIfTI file whose data is shorter than its header says, whose spacing is zero or negative, or
    whose floating-point voxels hold NaN or infinity; the message names the file and what to do."""
    header = _read_header(path)
    if header is None:
        return  # not a header we know (ITK's own reader reports it)
    endian, dims, datatype, bitpix, pixdim, vox_offset = header
    ndim = dims[0]
    spacing = pixdim[1:1 + min(ndim, 3)]
    for axis, value in zip("xyz", spacing):
        if not np.isfinite(value) or value <= 0:
            raise PromptRegisterError(
                f"{path} says its voxel spacing along {axis} is {value:g} mm (its header's pixdim); a spacing must "
                "be a positive number. Fix the header (e.g. rewrite the image with the scanner's spacing) and try "
                "again.")
    voxels = int(np.prod([max(int(d), 1) for d in dims[1:1 + ndim]], dtype=np.int64))
    expected = voxels * bitpix // 8
    data_path, offset = _data_location(path, vox_offset)
    dtype = np.dtype(_DATATYPES[datatype]).newbyteorder(endian) if datatype in _DATATYPES else None
    floating = dtype is not None and dtype.kind == "f" and not allow_nan
    found, non_finite = _scan_data(data_path, offset, expected, dtype if floating else None)
    if found < expected:
        raise PromptRegisterError(
            f"{data_path} is incomplete: its header describes {expected:,} bytes of voxel data but the file holds "
            f"{found:,} ({100 * found / max(expected, 1):.0f} %). It was probably cut off while being copied or "
            "downloaded; copy it again.")
    if non_finite:
        raise PromptRegisterError(
            f"{path} contains {non_finite:,} NaN or infinite voxel values. Replace them (e.g. with 0) before "
            "registering.")


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as stream:
        return stream.read(2) == b"\x1f\x8b"


def _read_header(path: Path) -> Optional[Tuple[str, tuple, int, int, tuple, int]]:
    """(byte order, dim[8], datatype, bitpix, pixdim[8], vox_offset) of a NIfTI-1 or -2 header, or None."""
    try:
        with _open(path) as stream:
            raw = stream.read(540)
    except (OSError, EOFError, zlib.error):
        raise PromptRegisterError(f"{path} is damaged: its compressed header cannot be read. Copy it again.") from None
    for endian in "<>":
        for size, (dims_at, types_at, pixdim_at, offset_at, dims_code, pixdim_code, offset_code) in _LAYOUTS.items():
            if len(raw) >= size and struct.unpack(endian + "i", raw[:4])[0] == size:
                dims = struct.unpack_from(endian + dims_code, raw, dims_at)
                datatype, bitpix = struct.unpack_from(endian + "hh", raw, types_at)
                pixdim = struct.unpack_from(endian + pixdim_code, raw, pixdim_at)
                vox_offset = int(struct.unpack_from(endian + offset_code, raw, offset_at)[0])
                return endian, dims, datatype, bitpix, pixdim, vox_offset
    return None


def _data_location(path: Path, vox_offset: int) -> Tuple[Path, int]:
    """The file holding the voxels and where they start: the same file for .nii, the .img beside a .hdr."""
    name = path.name
    lower = name.lower()
    if lower.endswith((".hdr", ".hdr.gz")):
        gz = lower.endswith(".gz")
        stem = name[: -len(".hdr.gz")] if gz else name[: -len(".hdr")]
        candidates = [path.with_name(stem + suffix) for suffix in (".img.gz", ".img") if gz or suffix == ".img"]
        candidates += [path.with_name(stem + ".IMG")]
        for candidate in candidates:
            if candidate.exists():
                return candidate, 0
        raise PromptRegisterError(f"{path} is an Analyze/NIfTI header without its data file ({stem}.img) beside it.")
    return path, vox_offset


def _data_blocks(path: Path) -> Iterator[bytes]:
    """The file's bytes, decompressed when gzipped, block by block; a cut-off gzip stream ends early instead of
    raising, so the caller can say how much of it was there."""
    with open(path, "rb") as stream:
        if not _is_gzip(path):
            yield from iter(lambda: stream.read(_CHUNK), b"")
            return
        inflater = zlib.decompressobj(wbits=31)
        for raw in iter(lambda: stream.read(_CHUNK), b""):
            try:
                block = inflater.decompress(raw)
            except zlib.error:
                return
            if block:
                yield block
            if inflater.eof:  # one gzip member is a whole NIfTI file
                return


def _scan_data(path: Path, offset: int, expected: int, dtype: Optional[np.dtype]) -> Tuple[int, int]:
    """(bytes of voxel data present, up to `expected`; NaN/inf values among them when `dtype` is floating)."""
    found = non_finite = position = 0
    leftover = b""
    for block in _data_blocks(path):
        start = max(offset - position, 0)
        position += len(block)
        block = block[start:expected - found + start]
        if not block:
            continue
        found += len(block)
        if dtype is not None:
            block = leftover + block
            usable = len(block) - len(block) % dtype.itemsize
            values = np.frombuffer(block[:usable], dtype=dtype)
            non_finite += int(values.size - np.count_nonzero(np.isfinite(values)))
            leftover = block[usable:]
        if found >= expected:
            break
    return found, non_finite
