"""Helpers shared by the MRML tests (slicer-core wheel)."""

from __future__ import annotations

import numpy as np

import slicer

from PromptRegisterLib.mrml import lps_to_ras


def clicks_on_labels(scene, labels, per_label: int, seed: int):
    """A markups point list with the clicks a user would place inside each label of `labels` (RAS, as Slicer
    shows them), labelled "label <k>"."""
    markups = slicer.vtkMRMLMarkupsFiducialNode()
    scene.AddNode(markups)
    rng = np.random.default_rng(seed)
    for label in (1, 2):
        voxels = np.argwhere(labels.array == label)
        for kji in voxels[rng.choice(len(voxels), per_label, replace=False)]:
            ras = lps_to_ras(labels.geometry.index_to_physical(kji[::-1].astype(float)))
            markups.AddControlPointWorld(*ras.tolist(), f"label {label}")
    return markups


def wait_for_end(logic, timeout: float = 300.0) -> list:
    """Poll like the Widget's timer does until a result or error event arrives."""
    import time

    events, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        events += logic.poll()
        if any(event.get("type") in ("result", "error") for event in events):
            return events
        time.sleep(0.1)
    raise AssertionError("no result within the timeout")
