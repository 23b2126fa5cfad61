"""The command line under interruption and careless use: one line and a known exit code, never a traceback, and an
output folder that holds one whole run's files or nothing of ours.

The runs use the weight-free classical segmenter and the paper preset (no image registration), about 5 s each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from promptregister.cli import main

QUICK = ["--model", "classical", "--point", "-20,-35,24", "--preset", "paper", "--quiet"]


def _register_argv(hippocampus_paths, out_dir: Path, *extra: str) -> List[str]:
    fixed, _ = hippocampus_paths("001")
    moving, _ = hippocampus_paths("004")
    return ["register", "--fixed", str(fixed), "--moving", str(moving), "--out-dir", str(out_dir), *QUICK, *extra]


def _names(folder: Path) -> List[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_overwrite_leaves_only_the_new_runs_files(tmp_path, hippocampus_paths):
    out = tmp_path / "out"
    assert main(_register_argv(hippocampus_paths, out, "--report", "--resampled")) == 0
    first = _names(out)
    assert {"report.html", "report_overlay.png", "moving_resampled.nii.gz", "transform.h5"} <= set(first)
    (out / "my_notes.txt").write_text("the user's own file")
    assert main(_register_argv(hippocampus_paths, out)) == 2  # without --overwrite: refused
    assert main(_register_argv(hippocampus_paths, out, "--overwrite")) == 0
    second = _names(out)
    assert "my_notes.txt" in second
    assert not any(name.startswith(("report", "moving_resampled")) for name in second), second
    assert {"transform.h5", "pairs.json", "fixed_rois.nii.gz", "moving_rois.seg.nrrd"} <= set(second)


def _start(argv: List[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "promptregister", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def _wait_for_staging(process: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    """Until the run has started writing: its private staging folder (.promptregister-<pid>-...) exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and any(name.startswith(".promptregister-") for name in os.listdir(out)):
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended before it wrote anything: {process.communicate()}")
        time.sleep(0.002)
    pytest.fail("the run did not start writing")


def test_sigterm_while_writing_leaves_nothing_and_says_so(tmp_path, hippocampus_paths):
    """SIGTERM (a scheduler's stop) left a hidden staging folder with a 6 MB partial .h5."""
    out = tmp_path / "out"
    process = _start(_register_argv(hippocampus_paths, out, "--report", "--resampled"))
    _wait_for_staging(process, out)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("stopped (SIGTERM)")
    assert _names(out) == []


def test_a_killed_runs_temporary_folder_is_removed_by_the_next_run(tmp_path, hippocampus_paths):
    """SIGKILL cannot be caught: the next run into the same folder removes what the dead one left."""
    out = tmp_path / "out"
    process = _start(_register_argv(hippocampus_paths, out, "--report", "--resampled"))
    _wait_for_staging(process, out)
    process.kill()
    process.communicate(timeout=60)
    left = [name for name in _names(out) if name.startswith(".promptregister-")]
    assert left, "the kill came after the run had cleaned up; nothing to test"
    assert main(_register_argv(hippocampus_paths, out, "--overwrite")) == 0
    assert not [name for name in _names(out) if name.startswith(".")], _names(out)
    assert "transform.h5" in _names(out)


@pytest.mark.parametrize("delay", [0.3, 0.6, 1.0])
def test_ctrl_c_in_the_first_second_is_one_line(tmp_path, hippocampus_paths, delay):
    """Ctrl-C while the command still imported its models printed a torch import traceback. (Before 0.1 s the
    interpreter itself is starting, which no program can make quiet; tcmalloc's restart is off so that the
    interpreter starts once.)"""
    process = _start(_register_argv(hippocampus_paths, tmp_path / "out"), PROMPTREGISTER_TCMALLOC="0")
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().startswith("interrupted"), err
    assert _names(tmp_path / "out") == []


def test_wrong_output_suffixes_are_refused_before_the_work(tmp_path, hippocampus_paths, capsys):
    fixed, fixed_labels = hippocampus_paths("001")
    moving, moving_labels = hippocampus_paths("004")
    transform = tmp_path / "t.h5"
    assert main(["fit", "--fixed-labels", str(fixed_labels), "--moving-labels", str(moving_labels), "--out",
                 str(transform), "--linear-only", "--quiet"]) == 0
    capsys.readouterr()
    cases = {
        "is not an image format": ["warp", "--reference", str(fixed), "--moving", str(moving), "--transform",
                                   str(transform), "--out", str(tmp_path / "x.xyz")],
        "Cannot tell the transform format": ["fit", "--fixed-labels", str(fixed_labels), "--moving-labels",
                                             str(moving_labels), "--out", str(tmp_path / "t.xyz")],
        "can only hold a displacement field": ["fit", "--fixed-labels", str(fixed_labels), "--moving-labels",
                                               str(moving_labels), "--out", str(tmp_path / "t.nii.gz"),
                                               "--linear-only"],
    }
    for message, argv in cases.items():
        started = time.perf_counter()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert time.perf_counter() - started < 5, "refused only after the work"
    assert _names(tmp_path) == ["t.h5"]


@pytest.mark.parametrize("flag, value, message", [
    ("--search-mm", "-5", "search_mm is a distance in mm"),
    ("--marginal-samples", "-1", "marginal_samples must be a whole number, at least 0"),
    ("--slice-step", "0", "slice_step must be a whole number, at least 1"),
    ("--smoothness", "nan", "smoothness must be a finite number"),
    ("--threshold", "1.5", "threshold is a cosine similarity"),
])
def test_out_of_range_options_are_refused_by_name(tmp_path, hippocampus_paths, capsys, flag, value, message):
    """--smoothness nan told the user to lower learning_rate_mm, an option they cannot set."""
    assert main(_register_argv(hippocampus_paths, tmp_path / "out", f"{flag}={value}")) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
