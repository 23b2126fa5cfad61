"""What a cohort run applies to every pair: the models, the method options and the outputs.

One frozen, picklable object travels with every task to the Dask workers. `fingerprint()` is the part a result
depends on; it goes into each pair's done-marker, so changing any of it (another model, another grid spacing, a
report asked for) makes a rerun redo the pairs, while what only changes where or how fast they run (the device,
the number of workers) does not.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, Optional

from ..errors import PromptRegisterError
from .manifest import PairRow


@dataclass(frozen=True)
class BatchSettings:
    """Arguments (all optional):
        model: a segmenter name (models.SEGMENTER_CHOICES) or "auto", which `resolved()` turns into the concrete
            model once, on the machine that submits the cohort, so every worker runs the same one.
        checkpoint, decoder: model files, as for `promptregister register`.
        detector, detector_checkpoint: the text detector for rows with text.
        device: auto, cpu or cuda.
        preset, options: the method and field options, by their flat names (options.FLAT_OPTIONS).
        text, auto: the prompt for rows that give none (the manifest's own prompts win).
        report: write each pair's report.html (linked from summary.html).
        resampled: also write each moving image resampled onto its fixed grid.
    """

    model: str = "auto"
    checkpoint: Optional[str] = None
    decoder: Optional[str] = None
    detector: str = "grounding-dino-tiny"
    detector_checkpoint: Optional[str] = None
    device: str = "auto"
    preset: str = "default"
    options: Dict[str, Any] = field(default_factory=dict)
    text: Optional[str] = None
    auto: bool = False
    report: bool = True
    resampled: bool = False

    def __post_init__(self):
        from ..register import options_from_flat

        if "device" in self.options:
            raise PromptRegisterError("give the device as BatchSettings(device=...), not among the options")
        options_from_flat(dict(self.options), preset=self.preset)  # an unknown name or preset fails here, at once

    def resolved(self) -> "BatchSettings":
        """The same settings with `auto` replaced by the model it takes here (models.choose_model)."""
        from ..models import choose_model

        return replace(self, model=choose_model(self.model, self.checkpoint, self.decoder)[0])

    def fingerprint(self) -> Dict[str, Any]:
        """What a pair's result depends on: the models, the prompts' defaults, the outputs asked for and the
        effective method options (after the preset; so naming a default explicitly changes nothing), but not the
        device."""
        values = asdict(self)
        for name in ("device", "options", "preset"):
            values.pop(name)
        values["method"] = _without_device(asdict(self.register_options("auto")))
        return json.loads(json.dumps(values, sort_keys=True, default=str))

    def register_options(self, device: str):
        """RegisterOptions for one pair, its fit on `device` (a worker's own GPU on a local GPU cluster)."""
        from ..register import options_from_flat

        return options_from_flat(self.options, preset=self.preset, device=device)

    def prompts_for(self, row: PairRow) -> PairRow:
        """The row with the default prompt (--text, --auto) where it gives none; with neither, the row is
        registered on its images alone."""
        if row.has_prompt or not (self.text or self.auto):
            return row
        return replace(row, text=self.text, auto=self.auto)


def _without_device(values: Any) -> Any:
    if isinstance(values, dict):
        return {key: _without_device(value) for key, value in values.items() if key != "device"}
    return values
