"""The sample pair that ships with the package (issue #14 item 1): verified, written out by `promptregister
sample-data`, the same bytes as the shared data's subjects, and enough for the quick start with no ../shared."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from promptregister import sample_data
from promptregister.cli import main
from promptregister.errors import PromptRegisterError
from promptregister.io import read_label_map, read_volume

from conftest import has_shared_data, missing_shared_data, shared_root


def test_sample_data_command_writes_the_verified_pair_and_its_licence(tmp_path, capsys):
    assert main(["sample-data", str(tmp_path / "sample")]) == 0
    written = sorted(p.name for p in (tmp_path / "sample").iterdir())
    assert written == sorted([*sample_data.FILES, sample_data.LICENCE])
    for name, digest in sample_data.FILES.items():
        assert hashlib.sha256((tmp_path / "sample" / name).read_bytes()).hexdigest() == digest
    licence = (tmp_path / "sample" / sample_data.LICENCE).read_text()
    assert "CC BY-SA 4.0" in licence and "arXiv:1902.09063" in licence
    fixed = read_volume(tmp_path / "sample" / "case001_t1.nii.gz")
    labels = read_label_map(tmp_path / "sample" / "case001_hippocampus.nii.gz")
    assert fixed.geometry.size == (64, 64, 64) and labels.geometry.is_close(fixed.geometry)
    assert set(labels.array.ravel().tolist()) == {0, 1, 2}
    out = capsys.readouterr().out
    assert "try: promptregister register --fixed" in out and out.count("--point ") == len(
        sample_data.QUICK_START_POINTS)
    assert main(["sample-data", str(tmp_path / "sample")]) == 0  # a second time: same files, kept


def test_a_folder_with_other_files_of_the_same_name_is_refused(tmp_path, capsys):
    (tmp_path / "case001_t1.nii.gz").write_bytes(b"something else")
    assert main(["sample-data", str(tmp_path)]) == 2
    assert "exists with other content" in capsys.readouterr().err
    assert (tmp_path / "case001_t1.nii.gz").read_bytes() == b"something else"


def test_a_damaged_sample_file_is_an_error(tmp_path, monkeypatch):
    copy = tmp_path / "samples"
    shutil.copytree(sample_data.FOLDER, copy)
    (copy / "case004_t1.nii.gz").write_bytes(b"\x1f\x8b truncated")
    monkeypatch.setattr(sample_data, "FOLDER", copy)  # the same code on a copy whose file is damaged
    with pytest.raises(PromptRegisterError, match="is damaged"):
        sample_data.sample_path("case004_t1.nii.gz")


def test_the_bundled_files_are_the_shared_data_subjects_byte_for_byte():
    if not has_shared_data():
        missing_shared_data("the comparison with the shared data")  # a skip here, an error in CI
    for name in sample_data.FILES:
        assert (sample_data.FOLDER / name).read_bytes() == (shared_root() / "hippocampus_mr" / name).read_bytes()


def test_the_quick_start_points_lie_inside_the_moving_labels():
    labels = read_label_map(sample_data.sample_path(f"{sample_data.MOVING}_hippocampus.nii.gz"))
    for point in sample_data.QUICK_START_POINTS:
        index = labels.geometry.physical_to_index([float(v) for v in point.split(",")])
        i, j, k = (int(round(v)) for v in index)
        assert labels.array[k, j, i] > 0, point


def test_the_slicer_sample_data_source_points_at_the_verified_bundled_files():
    """The arguments the module gives Slicer's SampleDataLogic.registerCustomSampleDataSource (the Sample Data
    module itself needs the Slicer application, which is not here)."""
    import urllib.parse
    import urllib.request

    from PromptRegisterLib.sample_data import sample_source

    source = sample_source()
    assert source["category"] == "PromptRegister"
    assert len(source["uris"]) == len(source["fileNames"]) == len(source["nodeNames"]) == len(source["checksums"]) == 4
    for uri, name, checksum in zip(source["uris"], source["fileNames"], source["checksums"]):
        path = urllib.request.url2pathname(urllib.parse.urlparse(uri).path)
        assert uri.startswith("file://") and path == str(sample_data.FOLDER / name)
        assert checksum == "SHA256:" + hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert source["loadFileType"] == ["VolumeFile", "SegmentationFile", "VolumeFile", "SegmentationFile"]
    assert source["nodeNames"][:2] == ["hippocampus 001 T1", "hippocampus 001 labels"]
