"""One registration, three front ends: `promptregister register`, the worker's register request and a cohort's
manifest row all run job.run_job, so the same inputs give the same transform and the same region pairs.

The bundled sample pair (no shared data needed), the classical segmenter (no weights), two clicks.
"""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from promptregister import sample_data
from promptregister.cli import main
from promptregister.worker import WorkerClient

POINTS = sample_data.QUICK_START_POINTS[:1] + sample_data.QUICK_START_POINTS[3:4]  # one in each label
OPTIONS = {"marginal_samples": 0}


def field_of(folder) -> np.ndarray:
    transform = sitk.ReadTransform(str(folder / "transform.h5"))
    displacement = sitk.DisplacementFieldTransform(sitk.CompositeTransform(transform).GetNthTransform(0))
    return sitk.GetArrayFromImage(displacement.GetDisplacementField())


def pairs_of(folder) -> list:
    """pairs.json without what differs by nature between runs (timings)."""
    document = json.loads((folder / "pairs.json").read_text())
    pairs = document.get("pairs", document)
    return [{key: value for key, value in pair.items() if key not in ("seconds",)} for pair in pairs]


def test_the_command_line_the_worker_and_a_batch_row_give_the_same_result(tmp_path):
    files = sample_data.write_sample_data(tmp_path / "sample")
    fixed, moving = files[f"{sample_data.FIXED}_t1.nii.gz"], files[f"{sample_data.MOVING}_t1.nii.gz"]

    by_cli = tmp_path / "cli"
    arguments = ["register", "--fixed", str(fixed), "--moving", str(moving), "--model", "classical",
                 "--marginal-samples", "0", "--out-dir", str(by_cli), "--quiet", "--report"]
    for point in POINTS:
        arguments += ["--point", point]
    assert main(arguments) == 0

    by_worker = tmp_path / "worker"
    with WorkerClient() as client:
        answer = client.call("register", fixed=str(fixed), moving=str(moving), model="classical",
                             points=[{"lps": [float(v) for v in p.split(",")], "positive": True} for p in POINTS],
                             options=OPTIONS, out_dir=str(by_worker), timeout=300)
    assert answer["model"] == "classical"

    manifest = tmp_path / "pairs.csv"
    manifest.write_text("id,fixed,moving,points\n" + f'sample,{fixed},{moving},"{";".join(POINTS)}"\n')
    by_batch = tmp_path / "batch"
    assert main(["batch", str(manifest), "--out-dir", str(by_batch), "--model", "classical", "--marginal-samples",
                 "0", "--workers", "0", "--quiet"]) == 0
    by_batch = by_batch / "sample"

    reference = field_of(by_cli)
    assert np.abs(reference).max() > 0.1  # a real registration, not the identity
    for other in (by_worker, by_batch):
        np.testing.assert_allclose(field_of(other), reference, atol=1e-6)
        assert pairs_of(other) == pairs_of(by_cli)
    assert sorted(p.name for p in by_cli.iterdir()) == sorted(p.name for p in by_worker.iterdir())
