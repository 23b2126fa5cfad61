"""What the worker keeps between requests: loaded volumes and warm segmenters
(each with an in-memory embedding cache, so a second registration on the same
volumes costs no encoder time), and how a request becomes an engine call."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..job import DEFAULT_DETECTOR, ModelPool, RegisterJob, run_job
from ..progress import StageProgress
from ..volume import Volume
from .fields import check_options, shown, three_numbers
from .folders import make_private_folder, remove_stale_folders
from .protocol import ProtocolError


def register_options(values: Dict[str, Any], device: str):
    """RegisterOptions from a request's flat "options" object (options.FLAT_OPTIONS, and "preset", one of
    options.PRESETS); an unknown or malformed option (one of the wrong JSON type) is a bad request."""
    from ..errors import PromptRegisterError
    from ..register import options_from_flat

    if not isinstance(values, dict):
        raise ProtocolError("bad_request", '"options" must be an object of option names and values')
    values = check_options(values)
    preset = values.pop("preset", "default")  # a named starting point (options.PRESETS), then the options
    try:
        return options_from_flat(values, preset=preset, device=device)
    except (PromptRegisterError, TypeError, ValueError) as error:
        raise ProtocolError("bad_request", str(error)) from None


class Session:
    """Volumes and models of one worker process."""

    def __init__(self) -> None:
        remove_stale_folders()  # what workers that were killed left behind
        self.folder = make_private_folder()  # private (0700)
        self.volumes: Dict[str, Volume] = {}
        self.paths: Dict[str, str] = {}
        self.pool = ModelPool()  # warm segmenters and detectors, each with its in-memory embedding cache
        self.model_reason = ""

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- volumes -------------------------------------------------------------------------------
    def load(self, path: str, field: str = "path") -> Tuple[str, Volume]:
        """A volume by file path, read once; a path the system cannot use (too long, say) is a bad request
        naming `field` (a missing or unreadable image is the engine's error, as on the command line)."""
        from ..io import read_volume

        try:
            resolved = str(Path(path).resolve())
            for volume_id, known in self.paths.items():
                if known == resolved:
                    return volume_id, self.volumes[volume_id]
            volume = read_volume(path)
        except OSError as error:
            raise ProtocolError("bad_request", f'"{field}": cannot read {shown(path)} '
                                               f"({getattr(error, 'strerror', None) or error})") from None
        volume_id = f"v{len(self.volumes) + 1}"
        self.volumes[volume_id] = volume
        self.paths[volume_id] = resolved
        return volume_id, volume

    def volume(self, reference: Any, field: str) -> Volume:
        """A loaded volume by id, or a file path (loaded now)."""
        if not isinstance(reference, str) or not reference:
            raise ProtocolError("bad_request", f'"{field}" must be a volume id from "load" or a file path')
        if reference in self.volumes:
            return self.volumes[reference]
        try:
            exists = Path(reference).exists()
        except (OSError, ValueError):  # a name too long for the file system, say
            exists = False
        if not exists:
            raise ProtocolError("bad_request", f'"{field}": {shown(reference)} is neither a loaded volume nor a file')
        return self.load(reference, field)[1]

    # -- models --------------------------------------------------------------------------------
    def segmenter(self, model: str, device: str, checkpoint: Optional[str],
                  progress: Optional[StageProgress] = None, decoder: Optional[str] = None):
        """A warm segmenter (`auto` as in `models.choose_model`). Weights that are downloaded on first use
        report progress as the stage "download <model>"."""
        segmenter, concrete, reason = self.pool.segmenter(model, device, checkpoint, decoder, progress)
        self.said_model(concrete, reason)
        return segmenter

    def said_model(self, model: str, reason: str) -> None:
        self.model_reason = f"{model}: {reason}"  # returned with the result, so the panel can say it
        print(f"model {self.model_reason}", file=sys.stderr, flush=True)

    def detector(self, name: str, device: str, checkpoint: Optional[str]):
        return self.pool.detector(name, device, checkpoint)

    # -- long requests -------------------------------------------------------------------------------
    def embed(self, request: Dict[str, Any], progress: StageProgress) -> Dict[str, Any]:
        from ..methods import SlicedVolume

        volume = self.volume(request.get("volume"), "volume")
        segmenter = self.segmenter(request.get("model", "auto"), request.get("device", "auto"),
                                   request.get("checkpoint"), progress, request.get("decoder"))
        before = segmenter.encoded_slices
        sliced = SlicedVolume(volume, segmenter, name="volume")
        sliced.embed(range(sliced.num_slices), progress)
        return {"slices": sliced.num_slices, "slices_encoded": segmenter.encoded_slices - before,
                "model": segmenter.name}

    def register(self, request: Dict[str, Any], progress: StageProgress) -> Dict[str, Any]:
        """A registration. Everything the request says is checked before the disk is touched (parse_request
        checked the fields' types): the prompts and options, then the volumes, then the output folder."""
        from ..outputs import check_output_folder

        out_dir = request.get("out_dir")
        if not isinstance(out_dir, str) or not out_dir:
            raise ProtocolError("bad_request", '"out_dir" (the folder for the outputs) is required')
        if not Path(out_dir).is_absolute():  # a remote client names a folder inside the worker's own
            if ".." in Path(out_dir).parts:
                raise ProtocolError("bad_request", f'a relative "out_dir" must stay inside the worker\'s folder; '
                                                   f"{shown(out_dir)} does not")
            out_dir = str(self.folder / out_dir)
        points = [self.point_prompt(p) for p in request.get("points") or []]
        point_pairs = [self.point_pair(p) for p in request.get("point_pairs") or []]
        device = request.get("device", "auto")
        options = register_options(request.get("options") or {}, device)
        fixed = self.volume(request.get("fixed"), "fixed")
        moving = self.volume(request.get("moving"), "moving")
        resampled = bool(request.get("resampled", False))
        check_output_folder(out_dir, bool(request.get("overwrite", False)))
        job = RegisterJob(fixed, moving, options, Path(out_dir),
                          points=points, point_pairs=point_pairs, text=request.get("text"),
                          auto=bool(request.get("auto", False)), sample_points=request.get("sample_points", 0),
                          model=request.get("model", "auto"), checkpoint=request.get("checkpoint"),
                          decoder=request.get("decoder"), detector=request.get("detector", DEFAULT_DETECTOR),
                          detector_checkpoint=request.get("detector_checkpoint"), device=device,
                          resampled=resampled, report=bool(request.get("report", True)))
        outcome = run_job(job, self.pool, progress, on_model=self.said_model)
        return {"files": {name: str(path) for name, path in outcome.files.items()},
                "summary": outcome.summary(), "model": outcome.model,
                "model_reason": self.model_reason if job.prompted else outcome.model_reason,
                "slices_encoded": outcome.slices_encoded}

    @staticmethod
    def point_pair(entry: Any):
        """{"moving": [x, y, z], "fixed": [x, y, z]} (LPS mm) -> PointPair."""
        from ..methods.point_pairs import PointPair

        if not isinstance(entry, dict) or "moving" not in entry or "fixed" not in entry:
            raise ProtocolError("bad_request", 'a point pair is {"moving": [x, y, z], "fixed": [x, y, z]} (LPS mm)')
        points = [three_numbers(entry[side], f"a point pair's {side} point") for side in ("moving", "fixed")]
        return PointPair(points[0], points[1])

    @staticmethod
    def point_prompt(entry: Any):
        from ..methods import PointPrompt

        if not isinstance(entry, dict) or "lps" not in entry:
            raise ProtocolError("bad_request", 'a point is {"lps": [x, y, z], "positive": true|false} (LPS mm)')
        positive = entry.get("positive", True)
        if not isinstance(positive, bool):
            raise ProtocolError("bad_request", f'a point\'s "positive" must be true or false; got {shown(positive)}')
        return PointPrompt(three_numbers(entry["lps"], "a point's lps"), positive)

