"""Bad files are refused before any work, and a disk that fills up gives one line, not a traceback or half a file.

Each test reproduces what a careless user (or a failing copy) produced: a .nii.gz cut off while being copied, NaN
voxels, a header with zero or absurd spacing, a disk that is full."""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import SimpleITK as sitk

from promptregister.cli import main
from promptregister.errors import PromptRegisterError
from promptregister.io import read_volume, write_transform, write_volume
from promptregister.io.nifti_check import check_nifti
from promptregister.io.transforms import displacement_field_transform


def _cut(source: Path, target: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def test_a_cut_off_nifti_is_refused_not_read_as_zeros(tmp_path, hippocampus_paths):
    image, labels = hippocampus_paths("004")
    for source in (image, labels):
        cut = _cut(source, tmp_path / f"cut_{source.name}", 0.6)
        with pytest.raises(PromptRegisterError, match="incomplete.*copy it again"):
            read_volume(cut)
    plain = tmp_path / "plain.nii"
    plain.write_bytes(gzip.decompress(image.read_bytes()))
    assert read_volume(plain).array.shape == read_volume(image).array.shape  # the whole file still reads
    with pytest.raises(PromptRegisterError, match=r"holds [\d,]+ \(7\d %\)"):
        read_volume(_cut(plain, tmp_path / "cut.nii", 0.75))


def test_evaluate_with_a_cut_off_label_map_exits_2_instead_of_a_wrong_dice(tmp_path, hippocampus_paths, capsys):
    """The tester's case: evaluate reported label-2 Dice 0.405 where the true value is 0.720."""
    fixed_image, fixed_labels = hippocampus_paths("001")
    _, moving_labels = hippocampus_paths("004")
    identity = tmp_path / "identity.h5"
    geometry = read_volume(fixed_image).geometry
    write_transform(displacement_field_transform(np.zeros(geometry.shape + (3,)), geometry), identity)
    cut = _cut(moving_labels, tmp_path / "labels.nii.gz", 0.5)
    code = main(["evaluate", "--fixed-labels", str(fixed_labels), "--moving-labels", str(cut),
                 "--transform", str(identity)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "incomplete" in err and "Traceback" not in err


def _nifti2(path: Path, array: np.ndarray) -> Path:
    """A NIfTI-2 file (540-byte header, 64-bit fields) written by hand: ITK writes NIfTI-1 only."""
    header = bytearray(540)
    struct.pack_into("<i8s", header, 0, 540, b"n+2\0\r\n\x1a\n")
    struct.pack_into("<hh", header, 12, 16, 32)  # float32
    struct.pack_into("<8q", header, 16, 3, *array.shape[::-1], 1, 1, 1, 1)
    struct.pack_into("<8d", header, 104, 1.0, 1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<q", header, 168, 544)
    path.write_bytes(bytes(header) + b"\0" * 4 + array.astype("<f4").tobytes())
    return path


def test_a_cut_off_nifti2_is_refused_too(tmp_path):
    """NIfTI-2 keeps its voxel offset as a 64-bit integer (a float in NIfTI-1): read it as a float and the check
    counts the header as voxel data and lets a cut-off file through. (This SimpleITK build reads no NIfTI-2 at
    all, others do; the check runs before the reader either way.)"""
    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    whole = _nifti2(tmp_path / "whole.nii", array)
    check_nifti(whole)  # the whole file passes
    with pytest.raises(PromptRegisterError, match=r"describes 480 bytes .* holds 380"):
        read_volume(_cut(whole, tmp_path / "cut.nii", (544 + 380) / (544 + 480)))


def _nifti_with(tmp_path: Path, name: str, array: np.ndarray, pixdim_x: float = 1.0) -> Path:
    """A NIfTI-1 file as ITK writes it, then pixdim[1] set in the header (what a broken converter leaves)."""
    image = sitk.GetImageFromArray(array)
    path = tmp_path / name
    sitk.WriteImage(image, str(path))
    header = bytearray(path.read_bytes())
    header[80:84] = struct.pack("<f", pixdim_x)
    path.write_bytes(bytes(header))
    return path


@pytest.mark.parametrize("pixdim", [0.0, -2.0])
def test_zero_or_negative_spacing_in_a_nifti_header_is_refused(tmp_path, pixdim):
    path = _nifti_with(tmp_path, "spacing.nii", np.ones((4, 5, 6), np.float32), pixdim)
    # ITK itself reads these without a word (1 mm for zero, the absolute value for negative ones)
    assert sitk.ReadImage(str(path)).GetSpacing()[0] > 0
    with pytest.raises(PromptRegisterError, match=f"spacing along x is {pixdim:g} mm"):
        read_volume(path)


def test_nan_voxels_in_a_nifti_are_refused_like_in_other_formats(tmp_path):
    array = np.ones((4, 5, 6), np.float32)
    array[1, 2, 3], array[2, 2, 2] = np.nan, np.inf
    for name in ("nan.nii", "nan.nii.gz", "nan.mha"):
        path = tmp_path / name
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
        with pytest.raises(PromptRegisterError, match="2 NaN or infinite"):
            read_volume(path)
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "nan.nii")))).all()  # ITK's zeros


@pytest.mark.parametrize("spacing", [1e-9, 1e6])
def test_an_absurd_spacing_is_refused_before_the_work(tmp_path, hippocampus_paths, spacing, capsys):
    """1e-9 mm ran out of memory in the fit; 1e6 mm ran without a word."""
    fixed, _ = hippocampus_paths("001")
    moving, _ = hippocampus_paths("004")
    image = sitk.ReadImage(str(moving))
    image.SetSpacing((spacing, 1.0, 1.0))
    odd = tmp_path / "odd.mha"
    sitk.WriteImage(image, str(odd))
    code = main(["register", "--fixed", str(fixed), "--moving", str(odd), "--out-dir", str(tmp_path / "out"),
                 "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "outside 0.001-100 mm" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder`: a disk that fills up (needs root, as CI has)."""
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small disk to fill up needs root (CI runs as root)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _fill(folder: Path, leave: int = 0) -> None:
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(folder / "filler", "wb") as stream:
        stream.write(b"\0" * max(free - leave, 0))


def test_register_onto_a_disk_too_small_refuses_before_the_work(tmp_path, hippocampus_paths, capsys):
    fixed, _ = hippocampus_paths("001")
    moving, _ = hippocampus_paths("004")
    with small_disk(tmp_path / "disk", "2m") as disk:
        code = main(["register", "--fixed", str(fixed), "--moving", str(moving), "--out-dir", str(disk / "out"),
                     "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1
        assert "not enough space" in err and "MB free" in err
        assert list(disk.iterdir()) == []


def test_a_write_that_fills_the_disk_says_so_in_one_line_and_leaves_nothing(tmp_path, hippocampus, capfd):
    """What the check before the work cannot foresee (another program filled the disk meanwhile): ITK's HDF5
    writer printed a 50-line error stack, and its NIfTI writer left a short file with no error at all."""
    image, _ = hippocampus("001")
    field = displacement_field_transform(np.zeros(image.geometry.shape + (3,)), image.geometry)
    noisy = image.with_array(np.random.default_rng(0).random(image.array.shape) * 1000)
    with small_disk(tmp_path / "disk", "4m") as disk:
        _fill(disk, leave=200_000)
        capfd.readouterr()
        for write, target in ((lambda path: write_transform(field, path), disk / "transform.h5"),
                              (lambda path: write_volume(noisy, path), disk / "image.nii"),
                              (lambda path: write_volume(noisy, path), disk / "image.nii.gz")):
            with pytest.raises(PromptRegisterError, match="no space left on the disk of"):
                write(target)
            assert sorted(path.name for path in disk.iterdir()) == ["filler"], target.name
        assert capfd.readouterr().err == ""  # nothing from HDF5 or the NIfTI writer
