"""The interactive loop (protocol 2) on a real worker subprocess: pairs by id, corrections, deletions, undo,
warm fits, cancel, background refinement, bad requests, and a worker reached through a whole command line
with a temporary folder of its own (the stand-in for a worker on another machine)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from promptregister.interactive import decode_mask, encode_mask
from promptregister.io import read_label_map, read_volume
from promptregister.worker import WorkerClient, WorkerError

FAST = {"marginal_samples": 0}  # every click answers with its final pair (no background refinement)


@pytest.fixture(scope="module")
def worker():
    """One worker for the module's tests (each opens sessions of its own): it starts once, and its models stay
    warm, as they do for a user's session after session."""
    client = WorkerClient()
    client.start()
    yield client
    client.close()


def label_points(labels_path: Path, count: int, seed: int = 0):
    """`count` LPS points inside the hippocampus labels (both labels, alternating), seeded."""
    labels = read_label_map(labels_path)
    rng = np.random.default_rng(seed)
    points = []
    for number in range(count):
        voxels = np.argwhere(labels.array == 1 + number % 2)
        kji = voxels[rng.integers(len(voxels))]
        points.append(labels.geometry.index_to_physical(kji[::-1].astype(float)).tolist())
    return points


def field_of(path: str) -> np.ndarray:
    transform = sitk.DisplacementFieldTransform(sitk.ReadTransform(path).GetNthTransform(0)) \
        if sitk.ReadTransform(path).GetName() == "CompositeTransform" else sitk.ReadTransform(path)
    return sitk.GetArrayFromImage(sitk.DisplacementFieldTransform(transform).GetDisplacementField())


def open_session(worker, hippocampus_paths, options=FAST, fixed="001", moving="004", embedded=True):
    """A session on a hippocampus pair; with `embedded`, after the worker has embedded every slice (clicks are
    then answered by the full search at once, as in batch register)."""
    fixed_path, _ = hippocampus_paths(fixed)
    moving_path, moving_labels = hippocampus_paths(moving)
    answer = worker.call("open", fixed=str(fixed_path), moving=str(moving_path), model="classical", device="cpu",
                         options=options, timeout=120)
    deadline = time.time() + 120
    while embedded and time.time() < deadline:
        if any(e.get("what") == "embedded" for e in worker.poll(answer["session"])):
            break
        time.sleep(0.1)
    else:
        assert not embedded, "the worker did not embed the slices in time"
    return answer["session"], moving_labels


def test_masks_travel_as_run_lengths_exactly():
    rng = np.random.default_rng(3)
    for mask in (rng.random((5, 6, 7)) > 0.7, np.ones((2, 3, 4), bool), np.zeros((2, 3, 4), bool)):
        encoded = encode_mask(mask)
        assert np.array_equal(decode_mask(encoded, mask.shape), mask)
    encoded["counts"][-1] += 1
    with pytest.raises(Exception, match="add up"):
        decode_mask(encoded)


def test_clicks_deletions_and_fit_give_what_batch_register_gives(worker, hippocampus_paths, tmp_path):
    session, moving_labels = open_session(worker, hippocampus_paths)
    points = label_points(moving_labels, 4)
    ids = [worker.call("prompt", session=session, points=[{"lps": p}], timeout=120)["pair"]["id"] for p in points]
    assert ids == ["p1", "p2", "p3", "p4"]
    worker.call("delete", session=session, pair="p3")
    fitted = worker.call("fit", session=session, timeout=300)
    assert [entry["id"] for entry in fitted["summary"]["pairs"]] == ["p1", "p2", "p4"]  # ids stable, p3 unused
    assert fitted["warm"] is False  # the first fit starts cold

    kept = [points[0], points[1], points[3]]
    fixed_path, _ = hippocampus_paths("001")
    moving_path, _ = hippocampus_paths("004")
    batch = worker.call("register", fixed=str(fixed_path), moving=str(moving_path), model="classical",
                        device="cpu", points=[{"lps": p} for p in kept], options=FAST, out_dir=str(tmp_path),
                        report=False, timeout=300)
    assert batch["summary"]["rejected_pairs"] == [] and len(batch["summary"]["pairs"]) == 3
    # the same pairs: batch pair for prompt point q has the interactive pair's Dice after the same fit
    by_prompt = {tuple(e["source"]["prompt_lps"]): e["dice_after"] for e in batch["summary"]["pairs"]}
    for entry in fitted["summary"]["pairs"]:
        assert entry["dice_after"] == pytest.approx(by_prompt[tuple(entry["source"]["prompt_lps"])], abs=0.02)
    # the same transform up to the order in which the pairs' losses are summed (the batch sorts pairs by score):
    # float32 rounding that can move the convergence test's stop by a window of iterations. Measured: mean
    # 1e-4 mm, max 0.12 mm; asserted: mean under 0.01 mm and max under a quarter of the 1 mm voxel
    difference = np.abs(field_of(fitted["transform"]) - field_of(batch["files"]["transform.h5"]))
    assert difference.mean() < 0.01 and difference.max() < 0.25, (difference.mean(), difference.max())


def test_warm_refit_after_a_deletion_stays_near_the_cold_fit(worker, hippocampus_paths):
    session, moving_labels = open_session(worker, hippocampus_paths)
    for point in label_points(moving_labels, 4, seed=1):
        worker.call("prompt", session=session, points=[{"lps": point}], timeout=120)
    worker.call("fit", session=session, timeout=300)
    worker.call("delete", session=session, pair="p2")
    warm = worker.call("fit", session=session, timeout=300)
    assert warm["warm"] is True and "p2" not in [e["id"] for e in warm["summary"]["pairs"]]
    cold = worker.call("fit", session=session, warm=False, timeout=300)
    difference = np.abs(field_of(warm["transform"]) - field_of(cold["transform"]))
    # the warm start skips the coarse levels, so it settles a little elsewhere: on three pairs (session 14) the
    # mean difference from the cold fit was 0.06-0.11 mm (locally up to 3.7 mm); asserted: a fifth of a voxel.
    # (Per-pair Dice is no measure here: one-slice ROIs flip between 0 and 0.9 with a half-voxel shift.)
    assert difference.mean() < 0.2, (difference.mean(), difference.max())
    assert cold["warm"] is False


def test_correction_takes_the_users_fixed_point_and_undo_restores_the_pair(worker, hippocampus_paths):
    session, moving_labels = open_session(worker, hippocampus_paths)
    first = worker.call("prompt", session=session, points=[{"lps": label_points(moving_labels, 1)[0]}],
                        timeout=120)["pair"]
    _, fixed_labels = hippocampus_paths("001")
    fixed_point = label_points(fixed_labels, 1, seed=5)[0]
    corrected = worker.call("correct", session=session, pair="p1", lps=fixed_point, timeout=120)["pair"]
    assert corrected["id"] == "p1" and corrected["version"] == 2 and corrected["corrected"]
    labels = read_label_map(fixed_labels)
    mask = decode_mask(corrected["fixed_mask"], labels.geometry.shape)
    i, j, k = np.round(labels.geometry.physical_to_index(np.array(fixed_point))).astype(int)
    assert mask[k, j, i]  # the corrected fixed ROI contains the user's point
    assert np.array_equal(decode_mask(corrected["moving_mask"]), decode_mask(first["moving_mask"]))
    undone = worker.call("undo", session=session)
    assert undone["action"] == "correct" and undone["restored"][0]["version"] == 1
    assert np.array_equal(decode_mask(undone["restored"][0]["fixed_mask"]), decode_mask(first["fixed_mask"]))
    assert worker.call("undo", session=session)["removed"] == ["p1"]  # then the click itself


def test_bad_requests_get_error_events_and_the_session_keeps_working(worker, hippocampus_paths):
    session, moving_labels = open_session(worker, hippocampus_paths)
    point = label_points(moving_labels, 1)[0]
    worker.call("prompt", session=session, points=[{"lps": point}], timeout=120)
    cases = [
        (dict(type="correct", pair="p9", lps=point), "no pair 'p9'"),
        (dict(type="prompt", points=[{"lps": [900.0, 0.0, 0.0]}]), "outside the moving image"),
        (dict(type="correct", pair="p1", lps=[900.0, 0.0, 0.0]), "outside the fixed image"),
        (dict(type="fit", pairs=["p1", "nope"]), "no pair 'nope'"),
        (dict(type="prompt", session="s99", points=[{"lps": point}]), "unknown session"),
    ]
    for fields, message in cases:
        kind = fields.pop("type")
        fields.setdefault("session", session)
        with pytest.raises(WorkerError, match=message):
            worker.call(kind, timeout=120, **fields)
    worker.call("delete", session=session, pair="p1")
    with pytest.raises(WorkerError, match="deleted"):
        worker.call("correct", session=session, pair="p1", lps=point, timeout=60)
    assert worker.call("prompt", session=session, points=[{"lps": point}], timeout=120)["pair"]["id"] == "p2"


def test_cancel_stops_a_fit_and_the_next_fit_runs(worker, hippocampus_paths):
    session, moving_labels = open_session(worker, hippocampus_paths)
    for point in label_points(moving_labels, 2):
        worker.call("prompt", session=session, points=[{"lps": point}], timeout=120)
    request = worker.send("fit", session=session)
    for event in worker.events(request, timeout=300):
        if event["type"] == "progress" and event["stage"].startswith("dense"):
            assert worker.cancel(request)
            break
    last = list(worker.events(request, timeout=120))[-1]
    assert last["type"] == "error" and last["code"] == "cancelled"
    assert worker.call("fit", session=session, timeout=300)["warm"] is False  # the cancelled fit left nothing


def test_a_click_before_the_slices_are_embedded_is_answered_coarse_to_fine_then_refined(worker, hippocampus_paths):
    fixed_path, _ = hippocampus_paths("001")
    moving_path, moving_labels = hippocampus_paths("004")
    session = "early"  # named by the client, so the click follows "open" in the worker's queue at once
    opened = worker.send("open", session=session, fixed=str(fixed_path), moving=str(moving_path), model="classical",
                         device="cpu", options=FAST)
    clicked = worker.send("prompt", session=session, points=[{"lps": label_points(moving_labels, 1)[0]}])
    assert worker.wait(opened, timeout=120)["session"] == session
    pair = worker.wait(clicked, timeout=120)["pair"]
    assert pair["refined"] is False and pair["source"]["marginal_samples"] == 0  # coarse to fine: not final
    deadline, refined = time.time() + 120, None
    while refined is None and time.time() < deadline:
        updates = [e for e in worker.poll(session) if e.get("type") == "update" and e.get("what") == "pair"]
        refined = updates[0]["pair"] if updates else None
        time.sleep(0.1)
    assert refined is not None and refined["id"] == pair["id"] and refined["refined"]


def test_a_fast_pair_is_refined_in_the_background(worker, hippocampus_paths):
    session, moving_labels = open_session(worker, hippocampus_paths, options={"marginal_samples": 2})
    pair = worker.call("prompt", session=session, points=[{"lps": label_points(moving_labels, 1)[0]}],
                       timeout=120)["pair"]
    assert pair["refined"] is False and pair["source"]["marginal_samples"] == 0
    deadline = time.time() + 120
    refined = None
    while refined is None and time.time() < deadline:
        updates = [e for e in worker.poll(session) if e["type"] == "update" and e.get("what") == "pair"]
        refined = updates[0]["pair"] if updates else None
        time.sleep(0.2)
    assert refined is not None and refined["id"] == "p1" and refined["refined"]
    assert refined["source"]["marginal_samples"] == 2 and "agreement" in refined["source"]


def test_a_worker_with_a_private_folder_registers_through_transfers(hippocampus_paths, tmp_path):
    """The remote stand-in: a second process started by a whole command line, with its own temporary folder.
    The client's copies of the volumes are deleted after upload, so the worker can only use what travelled
    through the protocol; the transform comes back the same way."""
    remote_tmp, client_dir = tmp_path / "remote-tmp", tmp_path / "client"
    remote_tmp.mkdir()
    client_dir.mkdir()
    command = ["env", f"TMPDIR={remote_tmp}", sys.executable, "-m", "promptregister.worker"]
    with WorkerClient(command=command) as remote:
        assert remote.remote and Path(remote.hello["folder"]).parent == remote_tmp
        uploaded = {}
        for case in ("001", "004"):
            local = client_dir / f"case{case}.nii.gz"
            shutil.copy(hippocampus_paths(case)[0], local)
            uploaded[case] = remote.upload(local)
            local.unlink()
            assert Path(uploaded[case]).parent.parent == Path(remote.hello["folder"])
        session = remote.call("open", fixed=uploaded["001"], moving=uploaded["004"], model="classical",
                              device="cpu", options=FAST, timeout=120)["session"]
        _, moving_labels = hippocampus_paths("004")
        for point in label_points(moving_labels, 2):
            remote.call("prompt", session=session, points=[{"lps": point}], timeout=120)
        fitted = remote.call("fit", session=session, timeout=300)
        local_transform = remote.download(fitted["transform"], client_dir / "transform.h5")
        assert local_transform.stat().st_size == os.path.getsize(fitted["transform"])
        assert field_of(str(local_transform)).shape[:3] == read_volume(hippocampus_paths("001")[0]).array.shape
        with pytest.raises(WorkerError, match="only files in"):
            remote.call("download", path=str(hippocampus_paths("001")[0]), offset=0)
        with pytest.raises(WorkerError, match="checksum"):
            remote.call("upload", name="x.nii", offset=0, last=False, data="eJwDAAAAAAE=", chunk_sha256="0" * 64)


def test_automatic_pairs_join_the_list_and_undo_as_one_step(worker, hippocampus_paths):
    session, moving_labels = open_session(worker, hippocampus_paths)
    worker.call("prompt", session=session, points=[{"lps": label_points(moving_labels, 1)[0]}], timeout=120)
    found = worker.call("auto", session=session, timeout=600)
    ids = [pair["id"] for pair in found["pairs"]]
    assert len(ids) >= 2 and ids[0] == "p2" and all(p["method"] == "samreg" for p in found["pairs"])
    worker.call("delete", session=session, pair=ids[0])
    assert worker.call("undo", session=session)["action"] == "delete"
    undone = worker.call("undo", session=session)
    assert undone["action"] == "samreg" and sorted(undone["removed"]) == sorted(ids)
    assert undone["pairs"] == ["p1"]  # the click before them stays


def test_text_pairs_come_from_a_grounding_dino_checkpoint_and_join_the_list(hippocampus_paths, tmp_path):
    """Tell2Reg through the worker with a tiny transformers GroundingDINO saved as a checkpoint folder (random
    weights, so every threshold is relaxed); the classical segmenter finds the regions in its boxes."""
    from tiny_models import save_tiny_hf_grounding_dino

    detector = save_tiny_hf_grounding_dino(tmp_path / "gdino")
    with WorkerClient(env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}) as client:
        loose = {"box_threshold": 0.0, "text_threshold": 0.0, "threshold": -1.0, "slice_step": 16,
                 "pairs_per_slice": 2, "marginal_samples": 0}
        session, _ = open_session(client, hippocampus_paths, options=loose)
        found = client.call("text", session=session, text="brain, head", detector="grounding-dino-tiny",
                            detector_checkpoint=str(detector), timeout=600)
        assert found["pairs"] and all(pair["method"] == "tell2reg" for pair in found["pairs"])
        assert [pair["id"] for pair in found["pairs"]] == [f"p{n + 1}" for n in range(len(found["pairs"]))]
        fitted = client.call("fit", session=session, timeout=300)
        assert {entry["id"] for entry in fitted["summary"]["pairs"]} == {pair["id"] for pair in found["pairs"]}


def test_a_session_name_is_a_plain_name_never_a_path(worker, hippocampus_paths, tmp_path):
    """The name becomes the session's folder: a path there would write transform.h5 wherever it pointed."""
    fixed_path, _ = hippocampus_paths("001")
    moving_path, _ = hippocampus_paths("004")
    for name in (str(tmp_path / "victim"), "../../escape", "a/b", ".hidden", "", 7):
        with pytest.raises(WorkerError, match="plain name"):
            worker.call("open", session=name, fixed=str(fixed_path), moving=str(moving_path), model="classical",
                        device="cpu", options=FAST, timeout=120)
    assert not (tmp_path / "victim").exists()
