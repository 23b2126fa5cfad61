"""The worker as a real subprocess, through the client the Slicer Logic uses."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from promptregister.io import read_label_map, read_transform
from promptregister.roipairs import RoiPairs
from promptregister.worker import PROTOCOL_VERSION, WorkerClient, WorkerDied, WorkerError


@pytest.fixture()
def worker():
    client = WorkerClient()
    client.start()
    yield client
    client.close()


def label_clicks(labels_path: Path, per_label: int = 1):
    labels = read_label_map(labels_path)
    rng = np.random.default_rng(0)
    points = []
    for label in (1, 2):
        voxels = np.argwhere(labels.array == label)
        for kji in voxels[rng.choice(len(voxels), per_label, replace=False)]:
            points.append({"lps": labels.geometry.index_to_physical(kji[::-1].astype(float)).tolist(),
                           "positive": True})
    return points


def test_hello_reports_versions_and_a_private_folder(worker):
    assert worker.hello["protocol"] == PROTOCOL_VERSION
    folder = Path(worker.hello["folder"])
    assert folder.is_dir() and (folder.stat().st_mode & 0o077) == 0  # only the user can read it
    worker.close()
    assert not folder.exists()  # removed on shutdown


def test_register_streams_progress_and_writes_loadable_results(worker, hippocampus_paths, tmp_path):
    fixed, _ = hippocampus_paths("001")
    moving, moving_labels = hippocampus_paths("004")
    fixed_id = worker.call("load", path=str(fixed))["volume"]
    moving_id = worker.call("load", path=str(moving))["volume"]
    assert worker.call("load", path=str(fixed))["volume"] == fixed_id  # loaded once
    request = dict(fixed=fixed_id, moving=moving_id, points=label_clicks(moving_labels), model="classical",
                   device="cpu", options={"marginal_samples": 0})
    request_id = worker.send("register", out_dir=str(tmp_path / "first"), resampled=True, **request)
    events = list(worker.events(request_id, timeout=300))
    assert events[-1]["type"] == "result", events[-1]
    progress = [e for e in events if e["type"] == "progress"]
    stages = [e["stage"] for e in progress]
    # the image registration first, then the clicks' slices, the refining fit, and the outputs
    assert stages[0] == "images: linear start" and any(s.startswith("embed") for s in stages) and "write" in stages
    assert stages.index("write") > max(i for i, s in enumerate(stages) if s.startswith("dense"))
    for stage in set(stages):  # within a stage, progress never goes back
        fractions = [e["fraction"] for e in progress if e["stage"] == stage]
        assert fractions == sorted(fractions)
    result = events[-1]
    files = {name: Path(path) for name, path in result["files"].items()}
    assert {"transform.h5", "fixed_rois.nii.gz", "moving_rois.nii.gz", "pairs.json", "moving_resampled.nii.gz",
            "fixed_rois.seg.nrrd", "moving_rois.seg.nrrd", "report.html", "report_overlay.png"} <= set(files)
    assert result["summary"]["report"] == str(files["report.html"])  # the panel shows where the pictures are
    read_transform(files["transform.h5"])
    pairs = RoiPairs.load(tmp_path / "first")
    assert len(pairs) == len(result["summary"]["pairs"]) >= 1
    assert result["slices_encoded"] > 0
    # the same volumes again: embeddings are warm, no slice is encoded twice
    again = worker.call("register", out_dir=str(tmp_path / "second"), timeout=300, **request)
    assert again["slices_encoded"] == 0
    assert Path(again["files"]["transform.h5"]).exists()


def test_register_without_a_prompt_loads_no_model_and_point_pairs_travel(worker, hippocampus_paths, tmp_path):
    """No prompt: the image registration, no model loaded. A point pair ({"moving", "fixed"} in LPS) becomes a
    landmark pair in the result; a malformed one is a bad request naming the form."""
    fixed, _ = hippocampus_paths("001")
    moving, moving_labels = hippocampus_paths("004")
    result = worker.call("register", fixed=str(fixed), moving=str(moving), out_dir=str(tmp_path / "images"),
                         device="cpu", report=False, timeout=300)
    assert result["model"] == "none" and result["summary"]["methods"] == ["images"]
    assert result["slices_encoded"] == 0 and result["summary"]["pairs"] == []
    point = label_clicks(moving_labels)[0]["lps"]
    result = worker.call("register", fixed=str(fixed), moving=str(moving), out_dir=str(tmp_path / "pair"),
                         point_pairs=[{"moving": point, "fixed": point}], model="classical", device="cpu",
                         report=False, timeout=300)
    assert result["summary"]["methods"][:2] == ["images", "point pairs"]
    assert "point pair 1 (points)" in [pair["name"] for pair in result["summary"]["pairs"]]
    with pytest.raises(WorkerError, match='"moving": \\[x, y, z\\], "fixed"'):
        worker.call("register", fixed=str(fixed), moving=str(moving), out_dir=str(tmp_path / "bad"),
                    point_pairs=[{"moving": point}], timeout=30)


def test_cancel_stops_the_run_and_writes_nothing(worker, hippocampus_paths, tmp_path):
    fixed, _ = hippocampus_paths("001")
    moving, _ = hippocampus_paths("004")
    out = tmp_path / "cancelled"
    request_id = worker.send("register", fixed=str(fixed), moving=str(moving), auto=True, model="classical",
                             device="cpu", out_dir=str(out))
    started = None
    for event in worker.events(request_id, timeout=300):
        if event["type"] == "progress" and event["stage"].startswith("samreg"):
            started = time.perf_counter()
            assert worker.cancel(request_id)
            break
    assert started is not None
    with pytest.raises(WorkerError) as caught:
        worker.wait(request_id, timeout=120)
    assert caught.value.code == "cancelled"
    assert time.perf_counter() - started < 10  # promptly
    assert not out.exists() or not any(out.iterdir())
    assert worker.call("hello", timeout=30)["protocol"] == PROTOCOL_VERSION  # still serving


def test_malformed_and_bad_requests_get_error_events_and_the_worker_keeps_serving(worker, tmp_path):
    worker.send_raw("{this is not json")
    event = next(worker.events(None, timeout=30))
    assert event["type"] == "error" and event["code"] == "bad_json"
    worker.send_raw('["a", "list"]')
    assert next(worker.events(None, timeout=30))["code"] == "bad_json"
    request_id = worker.send("teleport")
    assert [e["code"] for e in worker.events(request_id, timeout=30)] == ["unknown_type"]
    with pytest.raises(WorkerError) as caught:
        worker.call("register", fixed="v9", moving="v9", auto=True, out_dir=str(tmp_path / "x"), timeout=30)
    assert caught.value.code == "bad_request" and "neither a loaded volume nor a file" in caught.value.message
    with pytest.raises(WorkerError) as caught:
        worker.call("register", fixed="a", moving="b", auto=True, timeout=30)
    assert caught.value.code == "bad_request" and "out_dir" in caught.value.message
    with pytest.raises(WorkerError) as caught:
        worker.call("load", path=str(tmp_path / "missing.nii.gz"), timeout=30)
    assert caught.value.code == "engine"
    assert worker.call("hello", timeout=30)["protocol"] == PROTOCOL_VERSION


def test_numeric_request_ids_are_accepted_and_echoed_as_numbers(worker):
    """JSON-RPC clients number their requests; the answer carries the same id, of the same JSON type."""
    worker.send_raw('{"id": 7, "type": "hello"}')
    (event,) = list(worker.events(7, timeout=30))
    assert event["type"] == "result" and event["id"] == 7 and isinstance(event["id"], int)
    worker.send_raw('{"id": true, "type": "hello"}')  # a bool is not a number here
    assert next(worker.events(None, timeout=30))["code"] == "bad_request"


def test_shutdown_is_answered_at_once_while_a_request_runs(worker, hippocampus_paths, tmp_path):
    import time

    fixed, moving = hippocampus_paths("001")[0], hippocampus_paths("004")[0]
    run = worker.send("register", fixed=str(fixed), moving=str(moving), auto=True, model="classical",
                      out_dir=str(tmp_path / "o"))
    next(event for event in worker.events(run, timeout=120) if event["type"] == "progress")
    started = time.monotonic()
    worker.close(wait=False)
    assert time.monotonic() - started < 1.0, "closing must not wait for the worker"
    assert not (tmp_path / "o" / "transform.h5").exists()


def test_a_request_sent_right_after_a_cancel_waits_for_the_cancelled_one_instead_of_busy(worker, hippocampus_paths,
                                                                                       tmp_path):
    fixed, moving = hippocampus_paths("001")[0], hippocampus_paths("004")[0]
    request = dict(fixed=str(fixed), moving=str(moving), auto=True, model="classical",
                   options={"slice_step": 16, "search_mm": 3.0})
    first = worker.send("register", out_dir=str(tmp_path / "first"), **request)
    next(event for event in worker.events(first, timeout=120) if event["type"] == "progress")
    worker.cancel(first, wait=False)
    second = worker.send("register", out_dir=str(tmp_path / "second"), **request)
    assert [e["code"] for e in worker.events(first, timeout=120) if e["type"] == "error"] == ["cancelled"]
    assert worker.wait(second, timeout=300)["files"]
    assert not (tmp_path / "first" / "transform.h5").exists() and (tmp_path / "second" / "transform.h5").exists()
    busy_first = worker.send("register", out_dir=str(tmp_path / "third"), **request)
    busy = worker.send("register", out_dir=str(tmp_path / "fourth"), **request)  # not cancelled: refused
    assert [e.get("code") for e in worker.events(busy, timeout=60)] == ["busy"]
    worker.wait(busy_first, timeout=300)


def test_unknown_option_is_refused_by_name(worker, hippocampus_paths, tmp_path):
    fixed, _ = hippocampus_paths("001")
    with pytest.raises(WorkerError) as caught:
        worker.call("register", fixed=str(fixed), moving=str(fixed), auto=True, model="classical",
                    out_dir=str(tmp_path / "o"), options={"smoothnes": 0.1}, timeout=60)
    assert caught.value.code == "bad_request" and "'smoothnes'" in caught.value.message
    with pytest.raises(WorkerError) as caught:  # a preset is named like the CLI's --preset; a wrong one is refused
        worker.call("register", fixed=str(fixed), moving=str(fixed), auto=True, model="classical",
                    out_dir=str(tmp_path / "p"), options={"preset": "multimodel"}, timeout=60)
    assert caught.value.code == "bad_request" and "unknown preset 'multimodel'" in caught.value.message


def test_a_request_preset_sets_the_fit_and_options_override_it():
    from promptregister.worker.session import register_options

    multimodal = register_options({"preset": "multimodal"}, "cpu")
    assert multimodal.fit.image_metric == "mind" and multimodal.fit.device == "cpu"
    paper = register_options({"preset": "paper", "smoothness": 0.2}, "cpu")
    assert paper.fit.image_weight == 0.0 and paper.fit.smoothness == 0.2
    assert register_options({}, "cpu").fit.image_metric == "lncc"


def test_a_killed_worker_is_reported_with_its_stderr_and_restarts(worker):
    worker.process.kill()
    worker.process.wait()
    with pytest.raises(WorkerDied) as caught:
        worker.call("hello", timeout=30)
    assert "worker" in "\n".join(caught.value.stderr) and "ready" in str(caught.value)
    hello = worker.restart()
    assert hello["protocol"] == PROTOCOL_VERSION and worker.alive


def test_a_killed_worker_leaves_a_folder_the_next_worker_removes(worker):
    """SIGKILL leaves no chance to clean up; the next worker removes the dead one's folder, never a live one's."""
    dead_folder = Path(worker.hello["folder"])
    (dead_folder / "moving.nii.gz").write_bytes(b"derived from patient data")
    live = WorkerClient()
    live.start()
    try:
        worker.process.kill()
        worker.process.wait()
        assert dead_folder.exists()  # the killed worker could not remove it
        hello = worker.restart()  # a new worker process
        assert not dead_folder.exists()
        assert Path(live.hello["folder"]).exists()  # the other running worker's folder is kept
        assert Path(hello["folder"]).exists()
    finally:
        live.close()


def test_an_over_long_request_line_is_refused_and_the_worker_keeps_serving(worker):
    from promptregister.worker.server import MAX_REQUEST_CHARS

    worker.send_raw('{"id": "big", "type": "hello", "pad": "' + "x" * (3 * MAX_REQUEST_CHARS) + '"}')
    event = next(worker.events(None, timeout=60))
    assert event["type"] == "error" and event["code"] == "bad_request" and "longer than" in event["message"]
    assert worker.call("hello", timeout=30)["protocol"] == PROTOCOL_VERSION  # the rest of the line was dropped


def test_stale_folder_rules(tmp_path):
    """Only this user's worker folders whose process is gone are removed."""
    import os
    import subprocess
    import sys

    from promptregister.worker.folders import PREFIX, remove_stale_folders

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead = tmp_path / f"{PREFIX}{int(gone.stdout)}-abc123"
    alive = tmp_path / f"{PREFIX}{os.getppid()}-def456"
    unrelated = tmp_path / "promptregister-worker-notapid"
    for folder in (dead, alive, unrelated):
        folder.mkdir()
    assert remove_stale_folders(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and unrelated.exists()


def test_embed_warms_the_cache_for_later_requests(worker, hippocampus_paths):
    fixed, _ = hippocampus_paths("001")
    volume = worker.call("load", path=str(fixed), timeout=60)["volume"]
    stages = []
    first = worker.call("embed", volume=volume, model="classical", device="cpu", timeout=300,
                        on_progress=lambda stage, fraction: stages.append((stage, fraction)))
    assert first["slices"] == 64 and first["slices_encoded"] == 64
    assert stages and stages[-1][1] == 1.0
    assert worker.call("embed", volume=volume, model="classical", device="cpu", timeout=300)["slices_encoded"] == 0


def test_missing_weights_are_an_engine_error_that_names_the_file(worker, hippocampus_paths, tmp_path):
    fixed, _ = hippocampus_paths("001")
    missing = tmp_path / "sam_vit_b_01ec64.pth"
    with pytest.raises(WorkerError) as caught:
        worker.call("register", fixed=str(fixed), moving=str(fixed), auto=True, model="vit_b", device="cpu",
                    checkpoint=str(missing), out_dir=str(tmp_path / "out"), timeout=120)
    assert caught.value.code == "engine" and "sam_vit_b_01ec64.pth" in caught.value.message
    assert not (tmp_path / "out").exists()
    assert worker.call("hello", timeout=30)["protocol"] == PROTOCOL_VERSION


def test_the_cli_worker_command_speaks_the_same_protocol(tmp_path):
    """`promptregister worker` (as in DESIGN's CLI) answers on stdout, logs on stderr, and removes its folder on
    shutdown."""
    import json
    import subprocess
    import sys

    requests = [{"id": "a", "type": "hello"}, {"id": "b", "type": "shutdown"}]
    done = subprocess.run([sys.executable, "-m", "promptregister", "worker"], text=True, capture_output=True,
                          input="".join(json.dumps(r) + "\n" for r in requests), timeout=120)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["id"] for e in events] == ["a", "b"] and events[0]["protocol"] == PROTOCOL_VERSION
    assert "ready" in done.stderr
    assert not Path(events[0]["folder"]).exists()


def test_a_request_whose_last_event_is_written_no_longer_makes_the_next_one_busy():
    """A client may send its next request the moment it reads a result, while the finished request's thread is
    still returning. In-process server: the session's register is replaced (only here) by one that answers at
    once, and writing the result is slowed so that the thread is surely alive when the next request arrives."""
    import io
    import json
    import threading
    import time

    from promptregister.worker import server as server_module

    out = io.StringIO()
    server = server_module.Server(io.StringIO(), out)
    server.session.register = lambda request, progress: {"files": []}
    written_result = threading.Event()
    original_send = server.send

    def slow_after_result(request_id, kind, **fields):
        original_send(request_id, kind, **fields)
        if kind == "result" and request_id == 1:
            written_result.set()
            time.sleep(1.0)  # the thread that wrote the result is still alive for a second

    server.send = slow_after_result
    fields = '"fixed": "a", "moving": "b", "out_dir": "o"'  # what parse_request requires of a register request
    server.handle('{"id": 1, "type": "register", %s}' % fields)
    assert written_result.wait(10)
    assert server.running.is_alive()
    server.handle('{"id": 2, "type": "register", %s}' % fields)
    server.running.join(10)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["id"], e["type"]) for e in events] == [(1, "result"), (2, "result")], events
    server.session.close()


def test_a_batch_request_runs_a_cohort_on_dask_and_a_cancel_keeps_the_finished_pairs(worker, hippocampus_paths,
                                                                                      tmp_path):
    """The worker's batch request starts its own local Dask cluster (its processes must not write into the
    protocol stream); a cancel after the first pair stops the rest, and the next request skips what was done."""
    pytest.importorskip("distributed")
    lines = ["id,fixed,moving,points"]
    for fixed, moving in (("001", "004"), ("007", "008"), ("014", "015")):
        points = ";".join(",".join(f"{v:.3f}" for v in click["lps"]) for click in label_clicks(hippocampus_paths(moving)[1]))
        lines.append(f'{fixed}-{moving},{hippocampus_paths(fixed)[0]},{hippocampus_paths(moving)[0]},"{points}"')
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    request = dict(manifest=str(tmp_path / "pairs.csv"), out_dir=str(tmp_path / "cohort"),
                   settings={"model": "classical", "report": False, "options": {"marginal_samples": 0}})
    request_id = worker.send("batch", workers=1, **request)
    fractions = []
    for event in worker.events(request_id, timeout=300):
        assert event["type"] in ("progress", "log"), event
        fractions.append(event["fraction"])
        if event["fraction"] > 0:
            assert worker.cancel(request_id)
            break
    with pytest.raises(WorkerError) as caught:
        worker.wait(request_id, timeout=120)
    assert caught.value.code == "cancelled" and fractions[0] == 0.0 and fractions[-1] == pytest.approx(0.33, abs=0.01)
    done = sorted(path.parent.name for path in (tmp_path / "cohort").glob("*/done.json"))
    assert 1 <= len(done) < 3  # the first pair, perhaps one more that ended meanwhile; never all
    result = worker.call("batch", workers=0, timeout=300, **request)
    statuses = {record["id"]: record["status"] for record in result["records"]}
    assert {statuses[name] for name in done} == {"skipped"}
    assert result["counts"] == {"ok": 3 - len(done), "skipped": len(done), "failed": 0}
    assert Path(result["csv"]).is_file() and Path(result["html"]).is_file()
    with pytest.raises(WorkerError) as caught:
        worker.call("batch", timeout=30, **{**request, "settings": {"modle": "classical"}})
    assert caught.value.code == "bad_request" and "modle" in caught.value.message


def test_a_deeply_nested_line_is_refused_and_the_worker_answers_the_next_request():
    """4 KB of brackets used to exhaust json's recursion and end the worker before it answered anything."""
    import json
    import subprocess
    import sys

    lines = "[" * 2000 + "]" * 2000 + "\n" + '{"id": 1, "type": "hello"}\n'
    result = subprocess.run([sys.executable, "-m", "promptregister.worker"], input=lines, capture_output=True,
                            text=True, timeout=120)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    refused = [event for event in events if event.get("type") == "error"]
    assert refused and refused[0]["code"] == "bad_json" and "deep" in refused[0]["message"]
    assert any(event.get("id") == 1 and event.get("type") == "result" for event in events), events
    assert result.returncode == 0, result.stderr[-500:]


def test_wrong_types_and_non_finite_numbers_are_bad_requests_naming_the_field(worker, hippocampus_paths, tmp_path):
    """A tester's reports: "sample_points": "x" and options holding the NaN or Infinity literals (which Python's
    json reads) came back as "internal", or even ran with NaN. Every malformed request is a "bad_request" whose
    message names the field and what it should be; it is refused before the output folder is touched."""
    import json

    fixed, _ = hippocampus_paths("001")
    base = {"type": "register", "fixed": str(fixed), "moving": str(fixed), "model": "classical", "device": "cpu"}
    cases = [({"sample_points": "x"}, '"sample_points" must be a whole number'),
             ({"sample_points": 2.5}, '"sample_points" must be a whole number'),
             ({"options": {"smoothness": "NaN"}}, '"options.smoothness" must be a number'),
             ({"options": {"unfold": "false"}}, '"options.unfold" must be true or false'),
             ({"report": "no"}, '"report" must be true or false'),
             ({"points": [{"lps": ["1", 2, 3]}]}, "lps must be three numbers")]
    lines = [json.dumps({**base, **fields}) for fields, _ in cases]
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):  # what json.dumps would never write
        lines.append(json.dumps(base)[:-1] + f', "options": {{"smoothness": {literal}}}}}')
        cases.append(({}, '"options.smoothness" must be a finite number'))
    lines.append(json.dumps(base)[:-1] + ', "point_pairs": [{"moving": [0, 0, NaN], "fixed": [0, 0, 0]}]}')
    cases.append(({}, '"point_pairs[0].moving[2]" must be a finite number'))
    for number, (line, (_, message)) in enumerate(zip(lines, cases)):
        out = tmp_path / f"out{number}"
        request = json.loads(line)
        request.update(id=f"t{number}", out_dir=str(out))
        worker.send_raw(json.dumps(request, allow_nan=True))
        events = list(worker.events(f"t{number}", timeout=60))
        assert [(e["type"], e.get("code")) for e in events] == [("error", "bad_request")], (line, events)
        assert message in events[0]["message"], (line, events[0]["message"])
        assert not out.exists(), line
    assert worker.call("hello", timeout=30)["protocol"] == PROTOCOL_VERSION


def test_a_line_the_reading_thread_could_not_handle_no_longer_ends_the_worker(worker):
    """Found by Testing/test_worker_fuzz.py: a 5,000-digit number (over Python's int conversion limit) and a path
    longer than the file system takes raised past the reading thread, and the worker died without answering."""
    worker.send_raw('{"id": "digits", "type": "hello", "pad": ' + "7" * 5000 + "}")
    (event,) = list(worker.events("digits", timeout=30))
    assert event["code"] == "bad_request" and '"pad" is too large a number' in event["message"]
    with pytest.raises(WorkerError) as caught:
        worker.call("load", path="/" + "x" * 300, timeout=30)
    assert caught.value.code == "bad_request" and '"path": cannot read' in caught.value.message
    assert worker.call("hello", timeout=30)["protocol"] == PROTOCOL_VERSION
