"""One registration as every front end runs it: the models it needs (kept warm), `register`, the outputs.

The command line (argparse), the worker (a JSON request) and a cohort (a manifest row) each turn their input
into a RegisterJob and call run_job with their ModelPool; what differs between them is only how they read their
input and what they print. So the three give the same files for the same inputs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Tuple

from .progress import StageProgress
from .volume import Volume

if TYPE_CHECKING:  # the engine's heavy modules load with the first job, not with the worker
    from .methods.point_pairs import PointPair
    from .methods.promptreg import PointPrompt
    from .options import RegisterOptions

EMBEDDING_CACHE_BYTES = 2 * 1024 ** 3
"""Slice embeddings a pool keeps in memory for each segmenter: an interactive session's two volumes, or a cohort
registered to one atlas (the atlas is encoded once per process, not once per pair). An embedding is a pure
function of the slice, so a hit changes no result."""

DEFAULT_DETECTOR = "grounding-dino-tiny"


@dataclass
class RegisterJob:
    """What a registration needs: the volumes, the prompts, the models, the options and where the outputs go.

    Attributes:
        fixed, moving: the volumes (LPS geometry).
        points, point_pairs, text, auto, sample_points: the prompts (none: the image registration).
        model, checkpoint, decoder: the segmenter (models.choose_model's names; "auto" picks one and says why).
        detector, detector_checkpoint: the text detector, for `text`.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        options: RegisterOptions (its fit device is `device`).
        out_dir: the output folder (checked by the caller: outputs.check_output_folder).
        resampled: also write the moving volume resampled onto the fixed grid.
        report: also write report.html and its pictures.
    """

    fixed: Volume
    moving: Volume
    options: RegisterOptions
    out_dir: Path
    points: Sequence[PointPrompt] = ()
    point_pairs: Sequence[PointPair] = ()
    text: Optional[str] = None
    auto: bool = False
    sample_points: int = 0
    model: str = "auto"
    checkpoint: Optional[str] = None
    decoder: Optional[str] = None
    detector: str = DEFAULT_DETECTOR
    detector_checkpoint: Optional[str] = None
    device: str = "auto"
    resampled: bool = False
    report: bool = True

    @property
    def prompted(self) -> bool:
        """Whether any prompt was given (without one, no model is needed)."""
        return bool(text_prompt(self.text) is not None or self.points or self.point_pairs or self.auto or self.sample_points > 0)


@dataclass
class JobResult:
    """A job's outcome: the registration, the files written, and which model ran and why."""

    registration: Any  # register.RegistrationResult
    files: Dict[str, Path]
    model: str
    model_reason: str
    slices_encoded: int = 0

    def summary(self) -> Dict[str, Any]:
        """The registration's summary with the model and the report's path."""
        summary = self.registration.summary()
        summary["model"] = self.model
        if "report.html" in self.files:
            summary["report"] = str(self.files["report.html"])
        return summary


class ModelPool:
    """Segmenters and text detectors, each loaded once and kept warm for the jobs that follow (a worker's
    requests, a cohort's pairs in one process). `load_seconds` adds up the time spent loading."""

    def __init__(self, cache_bytes: int = EMBEDDING_CACHE_BYTES, disk_cache: Optional[Path] = None):
        self.cache_bytes = cache_bytes
        self.disk_cache = disk_cache
        self.load_seconds = 0.0
        self._models: Dict[Tuple, Any] = {}
        self._lock = threading.Lock()

    def segmenter(self, model: str, device: str, checkpoint: Optional[str] = None, decoder: Optional[str] = None,
                  progress: Optional[StageProgress] = None) -> Tuple[Any, str, str]:
        """(the segmenter, the model it is, why that one). Weights downloaded on first use report progress as
        the stage "download <model>"."""
        from .models import build_segmenter, choose_model
        from .models.cache import EmbeddingCache

        concrete, reason = choose_model(model, checkpoint, decoder)

        def downloaded(done: int, total: Optional[int]) -> None:
            if progress is not None and total:
                progress(f"download {concrete}", done / total)

        def build():
            cache = EmbeddingCache(memory_bytes=self.cache_bytes, disk_dir=self.disk_cache)
            return build_segmenter(concrete, checkpoint_path=checkpoint, decoder_path=decoder, device=device,
                                   cache=cache, download_progress=downloaded)

        return self._get(("segmenter", concrete, device, checkpoint, decoder), build), concrete, reason

    def detector(self, name: str, device: str, checkpoint: Optional[str] = None):
        from .models import build_detector

        return self._get(("detector", name, device, checkpoint),
                         lambda: build_detector(name, checkpoint_path=checkpoint, device=device))

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()

    def _get(self, key: Tuple, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._models:
                started = time.perf_counter()
                self._models[key] = build()
                self.load_seconds += time.perf_counter() - started
            return self._models[key]


def text_prompt(text: Optional[str]) -> Optional[str]:
    """The phrases a text prompt asks for: "paper" is the Tell2Reg paper's set (methods.PAPER_PHRASES); a
    blank text is no text prompt."""
    if text is None or not text.strip(" ,."):
        return None
    if text.strip().lower() == "paper":
        from .methods import PAPER_PHRASES

        return ", ".join(PAPER_PHRASES)
    return text


def run_job(job: RegisterJob, pool: ModelPool, progress: Optional[StageProgress] = None,
            on_model: Optional[Callable[[str, str], None]] = None) -> JobResult:
    """Register, then write the outputs into job.out_dir. `on_model(model, reason)` is told which segmenter
    was chosen before any work with it (the command line prints it); progress reaches "write" just before the
    outputs are written (the worker's last point for a cancel)."""
    from .outputs import ReportInputs, write_outputs
    from .register import register

    report = progress or (lambda stage, fraction: None)
    text = text_prompt(job.text)
    segmenter, model, reason = None, "none", "no prompt: the images alone"
    if job.prompted:  # the image registration needs no model
        segmenter, model, reason = pool.segmenter(job.model, job.device, job.checkpoint, job.decoder, report)
        if on_model is not None:
            on_model(model, reason)
    detector = pool.detector(job.detector, job.device, job.detector_checkpoint) if text is not None else None
    before = segmenter.encoded_slices if segmenter is not None else 0
    result = register(job.fixed, job.moving, segmenter=segmenter, text=text, points=list(job.points),
                      point_pairs=list(job.point_pairs), auto=job.auto, sample_points=job.sample_points,
                      detector=detector, options=job.options, progress=progress)
    report("write", 0.0)
    inputs = ReportInputs(job.fixed, job.moving, model) if job.report else None
    written = write_outputs(result, job.out_dir, job.moving if job.resampled else None, job.fixed.geometry, inputs)
    try:
        report("write", 1.0)
    except Exception:  # a cancel that arrived during the write is too late: the outputs are complete
        pass
    encoded = segmenter.encoded_slices - before if segmenter is not None else 0
    return JobResult(result, written, model, reason, encoded)
