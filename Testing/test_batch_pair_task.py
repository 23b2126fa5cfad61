"""One cohort pair as the batch runner will schedule it (issue #16): outputs all or nothing, a done-marker that
makes a rerun skip it unless its inputs or options change, and a user-input failure as a record, not a raise."""

from __future__ import annotations

import json
import shutil

import numpy as np

from promptregister.batch import BatchSettings
from promptregister.batch.manifest import PairRow
from promptregister.batch.pair_task import DONE_FILE, pair_state, run_pair
from promptregister.evaluate import evaluate_registration
from promptregister.io import read_label_map, read_transform

FAST = BatchSettings(model="classical", options={"marginal_samples": 0}, report=False)


def test_a_pair_writes_its_outputs_and_marker_and_a_change_makes_it_due_again(tmp_path, hippocampus_paths):
    files = {}
    for case in ("001", "004"):
        image, labels = hippocampus_paths(case)
        files[case] = (shutil.copy(image, tmp_path / f"sub{case}.nii.gz"),
                       shutil.copy(labels, tmp_path / f"sub{case}_labels.nii.gz"))
    labels = read_label_map(files["004"][1])
    points = [tuple(labels.geometry.index_to_physical(np.argwhere(labels.array == k)[0][::-1].astype(float)))
              for k in (1, 2)]
    row = PairRow(2, "p1", files["001"][0], files["004"][0], points, fixed_labels=files["001"][1],
                  moving_labels=files["004"][1])
    out = tmp_path / "out"
    assert pair_state(row, out, FAST) == "new"
    record = run_pair(row, out, FAST)
    assert record["status"] == "ok" and record["pairs"] >= 1 and record["folding_percent"] == 0.0
    # the record's figures are those of the transform written beside it, scored by `promptregister evaluate`
    figures = evaluate_registration(read_label_map(files["001"][1]), labels, read_transform(out / "p1" / "transform.h5"))
    assert record["dice_before"] == round(figures["mean"]["dice_before"], 4)
    assert record["dice_after"] == round(figures["mean"]["dice_after"], 4) != record["dice_before"]
    assert {"transform.h5", "pairs.json", DONE_FILE} <= {p.name for p in (out / "p1").iterdir()}
    assert json.loads((out / "p1" / DONE_FILE).read_text())["record"] == record
    assert pair_state(row, out, FAST) == "done"
    assert pair_state(row, out, BatchSettings(model="classical", options={"marginal_samples": 0, "grid_spacing_mm": 6.0},
                                              report=False, device="cpu")) == "done"  # a default named; the device
    assert pair_state(row, out, BatchSettings(model="classical", options={"marginal_samples": 0, "grid_spacing_mm": 4.0},
                                              report=False)) == "changed"  # other options
    shutil.copy(files["001"][0], files["004"][0])  # the moving image's file changed
    assert pair_state(row, out, FAST) == "changed"


def test_a_pair_that_fails_for_its_input_is_a_record_with_the_message(tmp_path, hippocampus_paths):
    row = PairRow(3, "bad", hippocampus_paths("001")[0], hippocampus_paths("004")[0], [(900.0, 0.0, 0.0)])
    record = run_pair(row, tmp_path, FAST)
    assert record["status"] == "failed" and "outside the moving image" in record["message"]
    assert not (tmp_path / "bad" / DONE_FILE).exists()


def test_a_pair_is_done_only_while_its_outputs_are_as_its_marker_recorded(tmp_path, hippocampus_paths):
    """The marker records every output's size and SHA-256; a missing, grown or rewritten output (same size, other
    bytes) makes the pair due again with the reason, and so does a marker of an earlier version without them."""
    from promptregister.batch.pair_task import pair_check
    from promptregister.checksums import sha256_of

    row = PairRow(2, "p1", hippocampus_paths("001")[0], hippocampus_paths("004")[0])
    out = tmp_path / "out"
    assert run_pair(row, out, FAST)["status"] == "ok"
    folder = out / "p1"
    stored = json.loads((folder / DONE_FILE).read_text())
    written = {p.name for p in folder.iterdir()} - {DONE_FILE}
    assert set(stored["outputs"]) == written and "transform.h5" in written
    for name, expected in stored["outputs"].items():
        assert expected == {"bytes": (folder / name).stat().st_size, "sha256": sha256_of(folder / name)}
    assert pair_check(row, out, FAST) == ("done", None)

    transform = (folder / "transform.h5").read_bytes()
    (folder / "pairs.json").write_text((folder / "pairs.json").read_text() + " ")
    assert pair_check(row, out, FAST) == ("changed", "its pairs.json changed since it was written")
    (folder / "pairs.json").write_text((folder / "pairs.json").read_text()[:-1])
    assert pair_check(row, out, FAST).state == "done"
    middle = len(transform) // 2
    (folder / "transform.h5").write_bytes(transform[:middle] + bytes([transform[middle] ^ 1]) + transform[middle + 1:])
    assert pair_check(row, out, FAST) == ("changed", "its transform.h5 changed since it was written")  # same size
    (folder / "transform.h5").unlink()
    assert pair_check(row, out, FAST) == ("changed", "its transform.h5 is missing")
    assert pair_state(row, out, FAST) == "changed"

    (folder / "transform.h5").write_bytes(transform)
    del stored["outputs"]  # as markers were written before the outputs' checksums
    (folder / DONE_FILE).write_text(json.dumps(stored))
    state, reason = pair_check(row, out, FAST)
    assert state == "changed" and "earlier version" in reason
