"""Cohorts on Dask (issue #16): a LocalCluster of two worker processes registers six shared-data pairs, the same
run in this process gives the same numbers, a worker killed mid-pair costs nothing but a retry, a rerun skips
what is done (no model load) and redoes what changed, and one pair's bad point fails that pair alone.

Real parts throughout: real Dask clusters of real processes, the real classical segmenter (the batch machinery
does not depend on which model runs; a pretrained one would make these tests minutes longer), real hippocampus
MR pairs and their labels, the real command line.
"""

from __future__ import annotations

import csv
import os
import signal
import threading
import time

import numpy as np
import pytest

from promptregister.batch import BatchSettings, ManifestError, run, warm_models
from promptregister.batch.pair_task import DONE_FILE
from promptregister.cli import main as cli_main
from promptregister.io import read_label_map

pytest.importorskip("distributed")

CASES = [("001", "004"), ("007", "008"), ("014", "015"), ("019", "020"), ("024", "025"), ("033", "034")]
"""Six inter-subject pairs; these tests check the machinery, not accuracy, so no sweep/test split applies."""
SETTINGS = BatchSettings(model="classical", options={"marginal_samples": 0}, report=False)
FIGURES = ("pairs", "dice_before", "dice_after", "hd95_before", "hd95_after", "folding_percent")


def inside_points(labels_path) -> str:
    """One point inside each label of the moving label map (its middle voxel), as the manifest's LPS text."""
    labels = read_label_map(labels_path)
    points = []
    for label in (1, 2):
        voxels = np.argwhere(labels.array == label)
        points.append(labels.geometry.index_to_physical(voxels[len(voxels) // 2][::-1].astype(float)))
    return ";".join(",".join(f"{v:.3f}" for v in point) for point in points)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, hippocampus_paths):
    folder = tmp_path_factory.mktemp("cohort")
    lines = ["id,fixed,moving,points,fixed_labels,moving_labels"]
    for fixed, moving in CASES:
        (fixed_image, fixed_labels), (moving_image, moving_labels) = hippocampus_paths(fixed), hippocampus_paths(moving)
        lines.append(f'{fixed}-{moving},{fixed_image},{moving_image},"{inside_points(moving_labels)}",'
                     f"{fixed_labels},{moving_labels}")
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    return folder / "pairs.csv"


def first_rows(manifest, count: int, folder):
    """A manifest of the first `count` pairs (shorter runs where six add nothing)."""
    path = folder / f"first{count}.csv"
    path.write_text("\n".join(manifest.read_text().splitlines()[:count + 1]) + "\n")
    return path


@pytest.fixture(scope="module")
def on_cluster(manifest, tmp_path_factory):
    """The six pairs on a LocalCluster of two worker processes (one thread each)."""
    out = tmp_path_factory.mktemp("cluster")
    return run(manifest, out, settings=SETTINGS, workers=2), out


def test_two_workers_register_every_pair_and_write_the_summary(on_cluster):
    summary, out = on_cluster
    assert [record["status"] for record in summary] == ["ok"] * len(CASES)
    for record in summary:
        assert {"transform.h5", "pairs.json", "fixed_rois.nii.gz", DONE_FILE} <= {p.name for p in (out / record["id"]).iterdir()}
        assert record["pairs"] == 2 and 0.0 <= record["dice_after"] <= 1.0
    with open(out / "summary.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["id"] for row in rows] == [f"{a}-{b}" for a, b in CASES]
    assert {"id", "status", "seconds", "pairs", "dice_before", "dice_after", "hd95_before", "hd95_after",
            "folding_percent", "dice_before_1", "dice_after_2"} <= set(rows[0])
    assert float(rows[0]["dice_after"]) == pytest.approx(summary[0]["dice_after"], abs=1e-4)
    page = (out / "summary.html").read_text()
    assert "<svg" in page and page.count("<rect") == 4  # two labels, before and after
    mean_after = sum(record["dice_after"] for record in summary) / len(summary)
    assert f"{mean_after:.3f} after" in page
    # the pairs ran on two processes, and each process loaded the model once: its first pair paid for it
    workers = {record["worker"] for record in summary}
    assert len(workers) == 2
    for worker in workers:
        assert sum("model_load_s" in record for record in summary if record["worker"] == worker) == 1


def test_the_same_run_in_this_process_gives_the_same_numbers(on_cluster, manifest, tmp_path):
    import torch

    summary, _ = on_cluster
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each cluster worker ran (2 workers on 2 cores): sums then round alike
    try:
        here = run(first_rows(manifest, 3, tmp_path), tmp_path, settings=SETTINGS, workers=0)  # three of the six
    finally:
        torch.set_num_threads(threads)
    assert len({record["worker"] for record in here}) == 1 and len(here) == 3
    for ours, theirs in zip(here, summary):
        assert {key: ours.get(key) for key in FIGURES} == {key: theirs.get(key) for key in FIGURES}, ours["id"]


def test_a_rerun_skips_done_pairs_without_loading_a_model_and_redoes_changed_ones(on_cluster, manifest, tmp_path):
    summary, out = on_cluster
    before = {record["id"]: (out / record["id"] / "transform.h5").stat().st_mtime_ns for record in summary}
    warm_models.forget()
    started = time.perf_counter()
    again = run(manifest, out, settings=SETTINGS, workers=0)
    assert [record["status"] for record in again] == ["skipped"] * len(CASES)
    assert warm_models.held() == 0  # no model was loaded in this process
    assert time.perf_counter() - started < min(record["seconds"] for record in summary)  # no pair was recomputed
    assert {key: again[0][key] for key in FIGURES} == {key: summary[0][key] for key in FIGURES}  # from the marker
    assert before == {record["id"]: (out / record["id"] / "transform.h5").stat().st_mtime_ns for record in summary}

    # another grid spacing changes every pair's result: all are redone; the same spacing named again skips them
    changed = BatchSettings(model="classical", options={"marginal_samples": 0, "grid_spacing_mm": 8.0}, report=False)
    two = first_rows(manifest, 2, tmp_path)
    redone = run(two, out, settings=changed, workers=0)
    assert [record["status"] for record in redone] == ["ok", "ok"]
    assert [record["dice_after"] for record in redone] != [record["dice_after"] for record in summary[:2]]
    assert [record["status"] for record in run(two, out, settings=changed, workers=0)] == ["skipped", "skipped"]


def test_a_worker_killed_mid_pair_has_its_pair_retried(manifest, tmp_path, monkeypatch):
    from dask.distributed import Client, LocalCluster

    from promptregister.batch.cluster import THREAD_VARIABLES

    for name in THREAD_VARIABLES:  # a Nanny sets its thread variables in this process too; undo that afterwards
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None)
    client = Client(cluster)
    killed = {}

    def kill_one_worker_at_work() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            busy = {worker: keys for worker, keys in client.processing().items() if keys}
            if busy:
                time.sleep(1.5)  # into the pair (each takes several seconds)
                worker, keys = next(iter(busy.items()))
                pid = client.run(os.getpid, workers=[worker])[worker]
                killed.update(pid=pid, keys=list(keys))
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_worker_at_work, daemon=True)
    killer.start()
    try:
        summary = run(first_rows(manifest, 4, tmp_path), tmp_path, settings=SETTINGS,
                      scheduler=cluster.scheduler_address)
    finally:
        killer.join(5)
        client.close()
        cluster.close()
    assert killed, "no worker was caught at work"
    assert [record["status"] for record in summary] == ["ok"] * 4
    assert all(record["worker"].split(":")[1] != str(killed["pid"]) for record in summary)  # nothing from the dead one
    assert all((tmp_path / record["id"] / DONE_FILE).is_file() for record in summary)


def test_a_point_outside_its_volume_fails_that_pair_alone(manifest, tmp_path):
    lines = manifest.read_text().splitlines()
    first = lines[1].split(",")
    lines[1] = ",".join(first[:3]) + ',"900,0,0",' + ",".join(first[-2:])  # the same pair, its point moved away
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:3]) + "\n")
    summary = run(bad, tmp_path / "out", settings=SETTINGS, workers=0)
    assert summary[0]["status"] == "failed" and "outside the moving image" in summary[0]["message"]
    assert summary[1]["status"] == "ok"
    assert not (tmp_path / "out" / summary[0]["id"]).exists()
    assert summary.dataframe().loc[summary[1]["id"], "status"] == "ok"


def test_the_command_reports_three_mistakes_before_anything_runs(manifest, tmp_path, capsys):
    lines = manifest.read_text().splitlines()
    lines[1] = lines[1].replace("case001_t1.nii.gz", "case001_t1_missing.nii.gz")  # a file that does not exist
    lines[2] = lines[2].replace(lines[2].split(",")[0], "bad id", 1)  # an id that cannot name a folder
    lines[3] = lines[3].replace(',"', ',"1,2;', 1)  # a point of two numbers before the good ones
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    code = cli_main(["batch", str(bad), "--out-dir", str(tmp_path / "out"), "--model", "classical", "--quiet"])
    error = capsys.readouterr().err
    assert code == 2 and "3 problem(s); nothing was run" in error
    assert "line 2" in error and "does not exist" in error
    assert "line 3" in error and "not a plain name" in error
    assert "line 4" in error and "not three numbers" in error
    assert not (tmp_path / "out").exists()


def test_the_command_runs_a_cohort_and_says_what_it_wrote(manifest, tmp_path, capsys):
    lines = manifest.read_text().splitlines()[:2]
    (tmp_path / "one.csv").write_text("\n".join(lines) + "\n")
    arguments = ["batch", str(tmp_path / "one.csv"), "--out-dir", str(tmp_path / "out"), "--model", "classical",
                 "--marginal-samples", "0", "--workers", "0", "--quiet"]
    assert cli_main(arguments) == 0
    printed = capsys.readouterr().out
    assert "1 pair: 1 registered, 0 skipped" in printed and "summary.csv" in printed
    assert (tmp_path / "out" / lines[1].split(",")[0] / "report.html").is_file()  # reports by default
    assert "report.html" in (tmp_path / "out" / "summary.html").read_text()
    assert cli_main(arguments + ["--no-report"]) == 0  # the outputs asked for changed: redone, the stale report gone
    assert "1 registered" in capsys.readouterr().out
    assert not (tmp_path / "out" / lines[1].split(",")[0] / "report.html").exists()


def test_bad_settings_are_refused_before_anything_runs(manifest, tmp_path):
    from promptregister.errors import PromptRegisterError

    with pytest.raises(PromptRegisterError, match="unknown option 'grid_spacing'"):
        BatchSettings(options={"grid_spacing": 4})
    with pytest.raises(PromptRegisterError, match="not both"):
        run(manifest, tmp_path, settings=SETTINGS, workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(PromptRegisterError, match="does not exist"):
        run(manifest.parent / "absent.csv", tmp_path)
    header_only = tmp_path / "empty.csv"
    header_only.write_text("id,fixed,moving\n")
    with pytest.raises(ManifestError, match="no pairs"):
        run(header_only, tmp_path)
