"""SAM-family segmenters on the real packages: segment-anything (vit_h, vit_l,
vit_b, MedSAM checkpoints) and MobileSAM (vit_t, the `mobile_sam` package).

Preprocessing is the packages' own: `ResizeLongestSide` from the model's
package, then `Sam.preprocess` (pixel mean/std, zero padding to the square),
exactly as `SamPredictor.set_image` does. MedSAM checkpoints are vit_b models
trained with their own input: the slice stretched to 1024 x 1024 (bicubic,
anti-aliased), min-max scaled to [0, 1], no mean/std, and logits upsampled
straight to the slice size; `preprocessing="medsam"` reproduces that.
"""

from __future__ import annotations

import importlib
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PromptRegisterError
from .base import (EverythingMasks, EverythingOptions, MaskPrediction, Segmenter, SliceEmbedding,
                   check_prompt)
from .cache import EmbeddingCache
from ..device import resolve_device
from .grid import EmbeddingGrid
from .many_prompt_decoder import ManyPromptDecoder
from .state_dict import load_state_dict
from .weights import WeightsManager

PREPROCESSING = ("sam", "medsam")


def _segment_anything(architecture: str) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        try:
            from segment_anything import sam_model_registry
        except ImportError:
            raise PromptRegisterError(
                "the segment-anything package is not installed (PromptRegister's main install has it): "
                "pip install segment-anything==1.0"
            ) from None
        return sam_model_registry[architecture](checkpoint=None)
    return build


def _mobile_sam() -> torch.nn.Module:
    import warnings

    try:
        with warnings.catch_warnings():  # mobile_sam re-registers timm's tiny_vit models, and timm says so at length
            warnings.filterwarnings("ignore", message="Overwriting tiny_vit", category=UserWarning)
            from mobile_sam import sam_model_registry
    except ImportError:
        raise PromptRegisterError(
            "the mobile_sam package is not installed; install the SAM extra: pip install 'promptregister[sam]'"
        ) from None
    return sam_model_registry["vit_t"](checkpoint=None)


ARCHITECTURES: Dict[str, Callable[[], torch.nn.Module]] = {
    "vit_h": _segment_anything("vit_h"),
    "vit_l": _segment_anything("vit_l"),
    "vit_b": _segment_anything("vit_b"),
    "vit_t": _mobile_sam,
}


def register_architecture(name: str, builder: Callable[[], torch.nn.Module]) -> None:
    """Make another SAM-class architecture buildable by name (fine-tuned variants, test models)."""
    ARCHITECTURES[name] = builder


def build_architecture(name: str) -> torch.nn.Module:
    """A randomly initialised model of a known architecture (weights are loaded separately)."""
    if name not in ARCHITECTURES:
        raise PromptRegisterError(f"unknown SAM architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name]()


def _load_weights(model: torch.nn.Module, state: dict, mismatch: str) -> None:
    """Load every tensor (strict); a mismatch is a user error that starts with `mismatch`."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise PromptRegisterError(f"{mismatch}: {str(error).splitlines()[0]}") from None


class SamSegmenter(Segmenter):
    """A `Segmenter` on a SAM-class model (`image_encoder`, `prompt_encoder`, `mask_decoder`).

    Arguments:
        model: the model, weights loaded.
        name: model name shown to users and used in cache keys.
        checkpoint_sha256: SHA-256 of the weights ("random" for untrained benchmark models).
        preprocessing: "sam" (segment-anything / MobileSAM) or "medsam".
        device: "auto", "cuda", "mps" or "cpu".
        half: encode in float16 autocast; default True on CUDA, False elsewhere.
        cache: optional shared `EmbeddingCache`.
        batch_size: slices per encoder call.
    """

    def __init__(self, model: torch.nn.Module, name: str, checkpoint_sha256: str, preprocessing: str = "sam",
                 device: str = "auto", half: Optional[bool] = None, cache: Optional[EmbeddingCache] = None,
                 batch_size: int = 4):
        super().__init__(cache=cache, batch_size=batch_size)
        if preprocessing not in PREPROCESSING:
            raise PromptRegisterError(f"unknown preprocessing {preprocessing!r}; use one of {PREPROCESSING}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.name = name
        self.checkpoint_sha256 = checkpoint_sha256
        self.preprocessing = preprocessing
        self.half = (self.device.type == "cuda") if half is None else bool(half)
        self.img_size = int(model.image_encoder.img_size)
        package = type(model).__module__.split(".")[0]
        transforms = importlib.import_module(f"{package}.utils.transforms")
        self._resize = transforms.ResizeLongestSide(self.img_size)

    @classmethod
    def from_checkpoint(cls, checkpoint: str, manager: Optional[WeightsManager] = None, path=None,
                        download_progress: Optional[Callable[[int, Optional[int]], None]] = None,
                        **options) -> "SamSegmenter":
        """Build the architecture named by a registry entry and load its verified weights (downloading them
        first when allowed; download_progress(bytes_done, bytes_total) follows that)."""
        manager = manager or WeightsManager()
        entry = manager.get(checkpoint)
        if entry.family not in ("sam", "mobile_sam", "medsam"):
            raise PromptRegisterError(f"checkpoint {checkpoint} is a {entry.family} model, not a SAM-family one")
        file = manager.resolve(checkpoint, path, progress=download_progress)
        digest = manager.verify(entry, file)
        model = build_architecture(entry.architecture)
        state = load_state_dict(file, f"{checkpoint} ({entry.architecture})",
                                f"give {entry.file_name} from {entry.url}")
        _load_weights(model, state, f"{file} does not fit the {entry.architecture} architecture of {checkpoint}")
        preprocessing = "medsam" if entry.family == "medsam" else "sam"
        return cls(model, checkpoint, digest, preprocessing=preprocessing, **options)

    @classmethod
    def from_custom_checkpoint(cls, path, manager: Optional[WeightsManager] = None, preprocessing: str = "sam",
                               **options) -> "SamSegmenter":
        """Any segment-anything ViT checkpoint (fine-tuned or test models): the architecture is read from its
        tensors (see `sam_architecture`), the file is loaded with weights_only and its SHA-256 reported; a file
        that is a known release is verified as that release."""
        from pathlib import Path

        from .sam_architecture import CUSTOM_ADVICE, infer_architecture, sidecar_overrides
        from .weights import sha256_of

        path = Path(path).expanduser()
        if not path.is_file():
            raise PromptRegisterError(f"checkpoint file {path} does not exist (given for --model custom)")
        manager = manager or WeightsManager(allow_download=False)
        digest = sha256_of(path)
        known = [entry for entry in manager.registry.values() if entry.sha256 == digest]
        if known and known[0].family in ("sam", "mobile_sam", "medsam"):
            return cls.from_checkpoint(known[0].name, manager, path, **options)
        state = load_state_dict(path, "segment-anything ViT", CUSTOM_ADVICE)
        architecture = infer_architecture(state, str(path), sidecar_overrides(path))
        model = architecture.build()
        _load_weights(model, state, f"{path} does not fit the architecture read from its tensors (and sidecar, "
                                    f"if any)")
        return cls(model, f"custom:{path.name}", digest, preprocessing=preprocessing, **options)

    @property
    def identity(self) -> str:
        return f"{self.name}|{self.checkpoint_sha256}|{self.preprocessing}|{self.img_size}"

    def grid_for(self, image_size) -> EmbeddingGrid:
        """Embedding geometry for a slice of this size."""
        shape = tuple(int(n) for n in self.model.prompt_encoder.image_embedding_size)
        if self.preprocessing == "medsam":
            return EmbeddingGrid.stretched(image_size, self.img_size, shape)
        return EmbeddingGrid.longest_side(image_size, self.img_size, shape)

    def _input_tensor(self, image: np.ndarray) -> torch.Tensor:
        """One slice as the encoder's (3, S, S) input, exactly as the reference code prepares it."""
        if self.preprocessing == "medsam":
            from skimage.transform import resize

            stretched = resize(image, (self.img_size, self.img_size), order=3, preserve_range=True,
                               anti_aliasing=True).astype(np.uint8)
            low, high = float(stretched.min()), float(stretched.max())
            scaled = (stretched - low) / max(high - low, 1e-8)
            return torch.as_tensor(scaled, dtype=torch.float32, device=self.device).permute(2, 0, 1)
        resized = self._resize.apply_image(image)
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        return self.model.preprocess(tensor)[0]

    @torch.no_grad()
    def _encode(self, images: Sequence[np.ndarray]) -> List[tuple]:
        batch = torch.stack([self._input_tensor(image) for image in images])
        if self.half and self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                features = self.model.image_encoder(batch)
        else:
            features = self.model.image_encoder(batch)
        features = features.float().cpu().numpy()
        return [(features[i], self.grid_for(image.shape[:2])) for i, image in enumerate(images)]

    def upscale_logits(self, low_res: torch.Tensor, grid: EmbeddingGrid) -> torch.Tensor:
        """(B, n, 256, 256) decoder logits -> (B, n, H, W) logits on the slice."""
        if self.preprocessing == "medsam":
            return F.interpolate(low_res, tuple(grid.image_size), mode="bilinear", align_corners=False)
        return self.model.postprocess_masks(low_res, tuple(grid.input_size), tuple(grid.image_size))

    @torch.no_grad()
    def decode(self, embedding: SliceEmbedding, coords: Optional[torch.Tensor], labels: Optional[torch.Tensor],
               boxes: Optional[torch.Tensor], multimask: bool) -> tuple:
        """Run the prompt encoder and mask decoder on prompts already in model-input coordinates.

        Returns (low-res logits (B, n, 256, 256), predicted IoU (B, n)).
        """
        prompt_encoder = self.model.prompt_encoder
        sparse, dense = prompt_encoder(points=None if coords is None else (coords, labels), boxes=boxes, masks=None)
        features = embedding.features.to(self.device, torch.float32)[None]
        return self.model.mask_decoder(image_embeddings=features, image_pe=prompt_encoder.get_dense_pe(),
                                       sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                       multimask_output=multimask)

    def sparse_prompts(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The prompt encoder's sparse embeddings of point prompts in model-input coordinates, (B, k, C)."""
        sparse, _ = self.model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        return sparse

    def many_prompt_decoder(self, embedding: SliceEmbedding) -> ManyPromptDecoder:
        """A mask decoder for many prompts without mask input on this slice (see many_prompt_decoder.py)."""
        prompt_encoder = self.model.prompt_encoder
        _, dense = prompt_encoder(points=None, boxes=None, masks=None)
        features = embedding.features.to(self.device, torch.float32)
        return ManyPromptDecoder(self.model.mask_decoder, features, prompt_encoder.get_dense_pe()[0], dense[0])

    @torch.no_grad()
    def segment(self, embedding: SliceEmbedding, points: Optional[np.ndarray] = None,
                labels: Optional[np.ndarray] = None, box: Optional[np.ndarray] = None,
                multimask: bool = True) -> MaskPrediction:
        points, labels, box = check_prompt(embedding, points, labels, box)
        grid = embedding.grid
        coords = labels_t = boxes = None
        if points is not None:
            coords = torch.as_tensor(grid.to_input(points), dtype=torch.float, device=self.device)[None]
            labels_t = torch.as_tensor(labels, dtype=torch.int, device=self.device)[None]
        if box is not None:
            corners = grid.to_input(box.reshape(2, 2)).reshape(1, 4)
            boxes = torch.as_tensor(corners, dtype=torch.float, device=self.device)
        low_res, iou = self.decode(embedding, coords, labels_t, boxes, multimask)
        logits = self.upscale_logits(low_res, grid)[0].float().cpu().numpy()
        threshold = float(getattr(self.model, "mask_threshold", 0.0))
        return MaskPrediction(masks=logits > threshold, scores=iou[0].float().cpu().numpy(),
                              logits=(logits - threshold).astype(np.float32))

    def segment_everything(self, embedding: SliceEmbedding,
                           options: Optional[EverythingOptions] = None) -> EverythingMasks:
        from .everything import sam_everything

        return sam_everything(self, embedding, options or EverythingOptions())
