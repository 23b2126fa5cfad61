"""The command line as a user runs it: files in, files and tables out, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from promptregister.cli import main
from promptregister.io import read_label_map, read_transform, read_volume
from promptregister.metrics import centroid
from promptregister.warp import warp_volume

FAST = ["--max-iterations", "60", "--quiet"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, hippocampus_paths):
    """One fit through the CLI, shared by the tests that read its outputs."""
    out = tmp_path_factory.mktemp("fit")
    fixed_image, fixed_labels = hippocampus_paths("001")
    moving_image, moving_labels = hippocampus_paths("004")
    argv = ["fit", "--fixed", str(fixed_image), "--moving", str(moving_image), "--fixed-labels", str(fixed_labels),
            "--moving-labels", str(moving_labels), "--out", str(out / "transform.h5"), "--warped", str(out / "warped.nii.gz"), "--json"] + FAST
    return out, argv, (fixed_image, fixed_labels, moving_image, moving_labels)


def test_fit_writes_transform_and_warped_image(fitted, capsys):
    out, argv, (fixed_image, _, moving_image, _) = fitted
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["linear_model"] == "affine"
    assert min(summary["dice_after"].values()) > 0.8
    warped = read_volume(out / "warped.nii.gz")
    assert warped.geometry.is_close(read_volume(fixed_image).geometry)
    expected = warp_volume(read_volume(moving_image), read_transform(out / "transform.h5"), warped.geometry)
    np.testing.assert_allclose(warped.array, expected.array, atol=1e-4)
    assert sorted(p.name for p in out.iterdir()) == ["transform.h5", "warped.nii.gz"]


def test_warp_labels_matches_the_in_memory_field(fitted, tmp_path):
    out, argv, (fixed_image, fixed_labels, _, moving_labels) = fitted
    if not (out / "transform.h5").exists():
        assert main(argv) == 0
    target = tmp_path / "warped_labels.nii.gz"
    assert main(["warp", "--reference", str(fixed_image), "--moving", str(moving_labels), "--transform", str(out / "transform.h5"), "--out", str(target), "--labels"]) == 0
    written = read_label_map(target)
    expected = warp_volume(read_label_map(moving_labels), read_transform(out / "transform.h5"), written.geometry, labels=True)
    np.testing.assert_array_equal(written.array, expected.array)


def test_evaluate_reports_improvement_and_landmark_tre(fitted, tmp_path, capsys):
    out, argv, (_, fixed_labels, _, moving_labels) = fitted
    if not (out / "transform.h5").exists():
        assert main(argv) == 0
    capsys.readouterr()
    fixed, moving = read_label_map(fixed_labels), read_label_map(moving_labels)
    for name, labels in (("fixed.csv", fixed), ("moving.csv", moving)):
        rows = ["x,y,z"] + [",".join(f"{v:.4f}" for v in centroid(labels.array == label, labels.geometry)) for label in (1, 2)]
        (tmp_path / name).write_text("\n".join(rows) + "\n")
    assert main(["evaluate", "--fixed-labels", str(fixed_labels), "--moving-labels", str(moving_labels), "--transform", str(out / "transform.h5"),
                 "--fixed-landmarks", str(tmp_path / "fixed.csv"), "--moving-landmarks", str(tmp_path / "moving.csv"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mean"]["dice_after"] > report["mean"]["dice_before"] + 0.15
    assert report["mean"]["hd95_mm_after"] < report["mean"]["hd95_mm_before"]
    assert report["tre"]["after_mean_mm"] < report["tre"]["before_mean_mm"]
    assert report["jacobian"]["folding_percent"] < 0.5
    assert main(["evaluate", "--fixed-labels", str(fixed_labels), "--moving-labels", str(moving_labels), "--transform", str(out / "transform.h5")]) == 0
    table = capsys.readouterr().out
    assert "Dice before" in table and "mean" in table and "folding" in table


def test_grid_mismatch_is_a_clear_error_with_no_output(tmp_path, hippocampus_paths, data_root, capsys):
    _, fixed_labels = hippocampus_paths("001")
    _, moving_labels = hippocampus_paths("004")
    other_image = data_root / "deepreg_mrus_prostate_simulated" / "case00_us.nii.gz"
    code = main(["fit", "--fixed", str(other_image), "--fixed-labels", str(fixed_labels), "--moving-labels", str(moving_labels), "--out", str(tmp_path / "t.h5")] + FAST)
    assert code == 2
    assert "different grids" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_missing_input_and_bad_output_folder_exit_2(tmp_path, hippocampus_paths, capsys):
    _, labels = hippocampus_paths("001")
    assert main(["fit", "--fixed-labels", str(tmp_path / "none.nii.gz"), "--moving-labels", str(labels), "--out", str(tmp_path / "t.h5")] + FAST) == 2
    assert "Image not found" in capsys.readouterr().err
    assert main(["fit", "--fixed-labels", str(labels), "--moving-labels", str(labels), "--out", str(tmp_path / "no" / "t.h5")] + FAST) == 2
    assert "does not exist" in capsys.readouterr().err


def test_console_entry_point_runs_with_help():
    result = subprocess.run([sys.executable, "-m", "promptregister", "fit", "--help"], capture_output=True, text=True, check=True)
    assert "--fixed-labels" in result.stdout and "--linear-only" in result.stdout
    top = subprocess.run([sys.executable, "-m", "promptregister", "--help"], capture_output=True, text=True, check=True)
    assert "examples:" in top.stdout and "FromParent" in top.stdout
