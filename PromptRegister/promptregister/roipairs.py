"""ROI pairs: the correspondence every method produces and the dense stage consumes.

Pair k is a boolean mask on the fixed grid and one on the moving grid that
cover the same anatomy, with a score and the source that produced them
(method, prompt, slice) for display and audit.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from .errors import PromptRegisterError
from .geometry import Geometry
from .io.atomic import atomic_output
from .io.images import read_label_map, write_label_map
from .io.segmentation import SUFFIX as SEGMENTATION_SUFFIX, write_segmentation
from .volume import Volume

FORMAT_VERSION = 1


@dataclass
class RoiPair:
    """One corresponding region: masks on the fixed and moving grids.

    Attributes:
        fixed_mask, moving_mask: boolean (k, j, i) arrays on their image grids.
        score: similarity of the two regions (method-specific, higher = better).
        source: where the pair came from, e.g. {"method": "samreg", "slice": 31}.
        name: label shown to users; the same in both images.
    """

    fixed_mask: np.ndarray
    moving_mask: np.ndarray
    score: float = 1.0
    source: Dict[str, Any] = field(default_factory=dict)
    name: str = ""


class RoiPairs:
    """An ordered list of ROI pairs with the two grids they live on."""

    def __init__(self, fixed_geometry: Geometry, moving_geometry: Geometry, pairs: Iterable[RoiPair] = ()) -> None:
        self.fixed_geometry = fixed_geometry
        self.moving_geometry = moving_geometry
        self.pairs: List[RoiPair] = []
        for pair in pairs:
            self.append(pair)

    def append(self, pair: RoiPair) -> None:
        """Add a pair after checking grids, dtype and that neither mask is empty."""
        number = len(self.pairs) + 1
        for mask, geometry, side in ((pair.fixed_mask, self.fixed_geometry, "fixed"), (pair.moving_mask, self.moving_geometry, "moving")):
            if mask.shape != geometry.shape:
                raise PromptRegisterError(
                    f"ROI pair {number}: the {side} mask has shape {mask.shape} but the {side} image is {geometry.shape} (k, j, i)."
                )
            if not mask.any():
                raise PromptRegisterError(f"ROI pair {number} ({pair.name or 'unnamed'}): the {side} mask is empty.")
        pair.fixed_mask = pair.fixed_mask.astype(bool, copy=False)
        pair.moving_mask = pair.moving_mask.astype(bool, copy=False)
        if not pair.name:
            pair.name = f"ROI {number}"
        self.pairs.append(pair)

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[RoiPair]:
        return iter(self.pairs)

    def __getitem__(self, index: int) -> RoiPair:
        return self.pairs[index]

    # -- label maps ---------------------------------------------------------
    @classmethod
    def from_label_maps(
        cls, fixed_labels: Volume, moving_labels: Volume, labels: Optional[Sequence[int]] = None
    ) -> "RoiPairs":
        """Pair label k of the fixed map with label k of the moving map.

        Arguments:
            labels: which labels to use; default: every non-zero label present in both.
        """
        present_fixed = set(np.unique(fixed_labels.array).tolist()) - {0}
        present_moving = set(np.unique(moving_labels.array).tolist()) - {0}
        if labels is None:
            labels = sorted(present_fixed & present_moving)
            if not labels:
                raise PromptRegisterError(
                    f"The label maps share no label (fixed has {sorted(present_fixed) or 'none'}, "
                    f"moving has {sorted(present_moving) or 'none'}); pair k needs label k in both."
                )
        for label in labels:
            for present, side in ((present_fixed, "fixed"), (present_moving, "moving")):
                if label not in present:
                    raise PromptRegisterError(f"Label {label} is empty in the {side} label map; choose labels present in both.")
        pairs = [
            RoiPair(fixed_labels.array == label, moving_labels.array == label, 1.0, {"method": "labels", "label": int(label)}, f"label {label}")
            for label in labels
        ]
        return cls(fixed_labels.geometry, moving_labels.geometry, pairs)

    def label_layers(self, side: str) -> List[np.ndarray]:
        """Label maps (value k + 1 for pair k) for one side; overlapping pairs go to extra layers.

        Every pair is drawn in the first layer where it overlaps no other pair,
        so the files keep every mask exactly even when ROIs overlap.
        """
        geometry = self.fixed_geometry if side == "fixed" else self.moving_geometry
        layers: List[np.ndarray] = []
        for number, pair in enumerate(self.pairs, start=1):
            mask = pair.fixed_mask if side == "fixed" else pair.moving_mask
            for layer in layers:
                if not (layer[mask] != 0).any():
                    layer[mask] = number
                    break
            else:
                layer = np.zeros(geometry.shape, dtype=np.int32)
                layer[mask] = number
                layers.append(layer)
        return layers or [np.zeros(geometry.shape, dtype=np.int32)]

    # -- files ----------------------------------------------------------------
    def save(self, folder: str | os.PathLike, prefix: str = "",
             metrics: Optional[Sequence[Dict[str, Any]]] = None) -> Dict[str, Path]:
        """Write <prefix>fixed_rois.nii.gz, <prefix>moving_rois.nii.gz and <prefix>pairs.json.

        Label value k + 1 marks pair k on both sides. Overlapping ROIs spill into
        extra files named ...fixed_rois.layer2.nii.gz and so on, listed in the JSON.
        The same pairs are also written as Slicer segmentations, <prefix>fixed_rois.seg.nrrd and
        <prefix>moving_rois.seg.nrrd: one file a side, overlapping pairs in layers, pair k named and
        coloured alike on both sides.
        `metrics` (one dict per pair, e.g. Dice after registration) are stored with each pair.
        """
        if metrics is not None and len(metrics) != len(self.pairs):
            raise PromptRegisterError(f"{len(metrics)} metric entries for {len(self.pairs)} ROI pairs")
        folder = Path(folder)
        written: Dict[str, Path] = {}
        files: Dict[str, List[str]] = {}
        for side in ("fixed", "moving"):
            geometry = self.fixed_geometry if side == "fixed" else self.moving_geometry
            names = []
            for number, layer in enumerate(self.label_layers(side), start=1):
                name = f"{prefix}{side}_rois.nii.gz" if number == 1 else f"{prefix}{side}_rois.layer{number}.nii.gz"
                write_label_map(Volume(layer, geometry), folder / name)
                names.append(name)
            files[side] = names
            written[f"{side}_rois"] = folder / names[0]
            segmentation = f"{prefix}{side}_rois{SEGMENTATION_SUFFIX}"
            write_segmentation([pair.fixed_mask if side == "fixed" else pair.moving_mask for pair in self.pairs],
                               [pair.name for pair in self.pairs], geometry, folder / segmentation)
            written[f"{side}_segmentation"] = folder / segmentation
        sidecar = {
            "format": "promptregister-roi-pairs",
            "version": FORMAT_VERSION,
            "files": files,
            "segmentations": {side: written[f"{side}_segmentation"].name for side in ("fixed", "moving")},
            "pairs": [
                {
                    "label": number,
                    "name": pair.name,
                    "score": float(pair.score),
                    "source": pair.source,
                    "fixed_voxels": int(pair.fixed_mask.sum()),
                    "moving_voxels": int(pair.moving_mask.sum()),
                    **(metrics[number - 1] if metrics is not None else {}),
                }
                for number, pair in enumerate(self.pairs, start=1)
            ],
        }
        json_path = folder / f"{prefix}pairs.json"
        with atomic_output(json_path) as temporary:
            temporary.write_text(json.dumps(sidecar, indent=2, default=_json_default))
        written["pairs"] = json_path
        return written

    @classmethod
    def load(cls, folder: str | os.PathLike, prefix: str = "") -> "RoiPairs":
        """Read pairs written by save()."""
        folder = Path(folder)
        json_path = folder / f"{prefix}pairs.json"
        if not json_path.exists():
            raise PromptRegisterError(f"No ROI pairs in {folder}: {json_path.name} is missing.")
        sidecar = json.loads(json_path.read_text())
        if sidecar.get("format") != "promptregister-roi-pairs":
            raise PromptRegisterError(f"{json_path} is not a PromptRegister ROI-pairs file.")
        layers = {side: [read_label_map(folder / name) for name in sidecar["files"][side]] for side in ("fixed", "moving")}
        pairs = []
        for entry in sidecar["pairs"]:
            label = entry["label"]
            masks = [np.any([layer.array == label for layer in layers[side]], axis=0) for side in ("fixed", "moving")]
            pairs.append(RoiPair(masks[0], masks[1], entry["score"], entry["source"], entry["name"]))
        return cls(layers["fixed"][0].geometry, layers["moving"][0].geometry, pairs)


def _json_default(value: Any) -> Any:
    """Make numpy scalars and arrays in sources JSON-serialisable."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot store {type(value).__name__} in pairs.json")
