"""A rerun of `promptregister batch` trusts a pair's done.json only while the pair's outputs are there as it
recorded them: a deleted transform.h5 makes the pair run again, and the console and summary.csv say why.

Real parts: the command line on the bundled sample pair with the classical backend, in this process.
"""

from __future__ import annotations

import csv
from pathlib import Path

from promptregister.cli import main as cli_main


def test_a_pair_whose_transform_was_deleted_runs_again_and_says_why(tmp_path: Path, hippocampus_paths, capsys):
    (fixed, fixed_labels), (moving, moving_labels) = hippocampus_paths("001"), hippocampus_paths("004")
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(f"id,fixed,moving,fixed_labels,moving_labels\ncase1,{fixed},{moving},{fixed_labels},"
                        f"{moving_labels}\n")
    out = tmp_path / "out"
    arguments = ["batch", str(manifest), "--out-dir", str(out), "--model", "classical", "--marginal-samples", "0",
                 "--workers", "0", "--no-report", "--quiet"]
    assert cli_main(arguments) == 0
    assert "1 registered, 0 skipped" in capsys.readouterr().out

    (out / "case1" / "transform.h5").unlink()
    assert cli_main(arguments) == 0
    captured = capsys.readouterr()
    assert "pair case1: its transform.h5 is missing; running it again" in captured.err
    assert "1 registered, 0 skipped" in captured.out  # not "skipped" with the old figures
    assert (out / "case1" / "transform.h5").is_file()
    with open(out / "summary.csv", newline="") as stream:
        row = next(csv.DictReader(stream))
    assert row["status"] == "ok" and row["message"].startswith("run again (its transform.h5 is missing)")

    assert cli_main(arguments) == 0  # now the outputs are as recorded again: skipped, silently
    captured = capsys.readouterr()
    assert "0 registered, 1 skipped" in captured.out and "running it again" not in captured.err
