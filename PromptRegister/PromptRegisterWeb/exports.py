"""The browser app's downloads: the transform, the two pair segmentations and the whole scene, as Slicer writes
them (so each opens in Slicer as it is): transform.h5, fixed_pairs.seg.nrrd, moving_pairs.seg.nrrd, scene.mrb.

Each is written whole into the server's private folder and then renamed, so a download never sends half a file.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict

import slicer

from promptregister.errors import PromptRegisterError
from promptregister.io.atomic import atomic_output

from .browser_session import BrowserSession

DOWNLOADS: Dict[str, str] = {
    "transform": "transform.h5",
    "fixed_segmentation": "fixed_pairs.seg.nrrd",
    "moving_segmentation": "moving_pairs.seg.nrrd",
    "scene": "scene.mrb",
}


def export(session: BrowserSession, what: str, folder: Path) -> Path:
    """Write `what` (a key of DOWNLOADS) into `folder`; returns the file."""
    if what not in DOWNLOADS:
        raise PromptRegisterError(f"unknown download {what!r} (one of {', '.join(DOWNLOADS)})")
    if not session.ready and session.loop.last_fit is None:
        raise PromptRegisterError("open a fixed and a moving volume first")
    folder.mkdir(parents=True, exist_ok=True)
    name = DOWNLOADS[what]
    if what == "transform":
        with atomic_output(folder / name) as partial:
            shutil.copyfile(session.transform_file(), partial)
        return folder / name
    if what == "scene":
        return _write_scene(session, folder / name)
    return _write_segmentation(session.loop.nodes[what], folder / name)


def _write_segmentation(node, target: Path) -> Path:
    """The segmentation in its own volume's space (the moving pairs are not moved by the transform)."""
    with atomic_output(target) as partial:
        storage = slicer.vtkMRMLSegmentationStorageNode()
        storage.SetFileName(str(partial))
        storage.SetUseCompression(1)
        if not storage.WriteData(node):
            raise PromptRegisterError(f"could not write {target.name}")
    return target


def _write_scene(session: BrowserSession, target: Path) -> Path:
    """The volumes, pairs, table and transform as one Slicer scene bundle (.mrb)."""
    scene = session.scene
    for node in [session.fixed_node, session.moving_node] + list(session.loop.nodes.values()):
        if node is not None and node.IsA("vtkMRMLStorableNode") and node.GetStorageNode() is None:
            node.AddDefaultStorageNode()
    with atomic_output(target) as partial:
        if not scene.WriteToMRB(str(partial)):
            raise PromptRegisterError("could not write the scene bundle")
    return target
