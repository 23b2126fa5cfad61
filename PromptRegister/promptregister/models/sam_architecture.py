"""SAM architectures read from a checkpoint's own tensors.

Fine-tuned SAM models (and the tiny test models) are segment-anything ViT
models whose sizes differ from the three published ones. Their state dict says
almost everything about the architecture: tensor shapes give the embedding
widths, depths, patch and input size, MLP ratios, which encoder blocks attend
globally (their relative-position tables span the whole grid) and the
encoder's head count (relative-position tables are per head dimension). Only
the mask decoder's head count leaves no trace in the shapes; it is SAM's 8
unless a sidecar file says otherwise.

Sidecar: `<checkpoint stem>.json` beside the checkpoint, with any of
`SamArchitecture`'s fields (e.g. {"decoder_num_heads": 2}); its values replace
the inferred ones, and loading is strict, so a sidecar that contradicts the
tensors is an error, never a silently different model.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import torch

from ..errors import PromptRegisterError

ENCODER = "image_encoder."
CUSTOM_ADVICE = ("give a segment-anything ViT checkpoint (.pth / .pt: SAM vit_b / vit_l / vit_h, MedSAM, or a "
                 "fine-tune of them); for MobileSAM use --model mobilesam, for an ONNX encoder --model onnx with "
                 "--decoder")
"""What to give instead, ending every message about a file that is not a usable --checkpoint."""


def not_a_checkpoint(source: str, why: str) -> PromptRegisterError:
    """`<source> is not a segment-anything ViT checkpoint (<why>); <what to give instead>`, on one line."""
    return PromptRegisterError(f"{source} is not a segment-anything ViT checkpoint ({why}); {CUSTOM_ADVICE}")


@dataclass(frozen=True)
class SamArchitecture:
    """The constructor arguments of a segment-anything `Sam` model."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: List[int]
    encoder_window_size: int
    encoder_mlp_ratio: float
    encoder_qkv_bias: bool
    patch_size: int
    image_size: int
    prompt_embed_dim: int
    mask_in_chans: int
    decoder_depth: int
    decoder_mlp_dim: int
    decoder_num_heads: int
    iou_head_depth: int
    iou_head_hidden_dim: int
    num_multimask_outputs: int

    def build(self) -> torch.nn.Module:
        """A randomly initialised segment-anything model of this architecture."""
        try:
            from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                                   TwoWayTransformer)
        except ImportError:
            raise PromptRegisterError("the segment-anything package is not installed (PromptRegister's main "
                                      "install has it): pip install segment-anything==1.0") from None
        grid = self.image_size // self.patch_size
        encoder = ImageEncoderViT(
            depth=self.encoder_depth, embed_dim=self.encoder_embed_dim, img_size=self.image_size,
            mlp_ratio=self.encoder_mlp_ratio, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=self.encoder_num_heads, patch_size=self.patch_size, qkv_bias=self.encoder_qkv_bias,
            use_rel_pos=True, global_attn_indexes=list(self.encoder_global_attn_indexes),
            window_size=self.encoder_window_size, out_chans=self.prompt_embed_dim)
        prompts = PromptEncoder(embed_dim=self.prompt_embed_dim, image_embedding_size=(grid, grid),
                                input_image_size=(self.image_size, self.image_size), mask_in_chans=self.mask_in_chans)
        transformer = TwoWayTransformer(depth=self.decoder_depth, embedding_dim=self.prompt_embed_dim,
                                        mlp_dim=self.decoder_mlp_dim, num_heads=self.decoder_num_heads)
        decoder = MaskDecoder(num_multimask_outputs=self.num_multimask_outputs, transformer=transformer,
                              transformer_dim=self.prompt_embed_dim, iou_head_depth=self.iou_head_depth,
                              iou_head_hidden_dim=self.iou_head_hidden_dim)
        return Sam(image_encoder=encoder, prompt_encoder=prompts, mask_decoder=decoder,
                   pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()


def _indexed(state: Mapping[str, torch.Tensor], prefix: str) -> List[int]:
    """The integer indices i of keys `prefix<i>.…`, sorted."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(match.group(1)) for key in state for match in [pattern.match(key)] if match})


def _shape(state: Mapping[str, torch.Tensor], key: str, source: str) -> torch.Size:
    if not isinstance(state.get(key), torch.Tensor):
        names = ", ".join(repr(name) for name in list(state)[:3]) + (", ..." if len(state) > 3 else "")
        raise not_a_checkpoint(source, f"it has no tensor {key!r}; it holds {names}")
    return state[key].shape


def infer_architecture(state: Mapping[str, torch.Tensor], source: str = "the checkpoint",
                       overrides: Optional[Dict] = None) -> SamArchitecture:
    """The architecture a segment-anything state dict was saved from (`overrides` replace inferred fields)."""
    if any(key.startswith(ENCODER + "layers.") for key in state):
        raise PromptRegisterError(f"{source} has a TinyViT image encoder (a MobileSAM checkpoint); "
                                  "use --model mobilesam with it")
    embed_dim, _, patch, _ = _shape(state, ENCODER + "patch_embed.proj.weight", source)
    grid = _shape(state, ENCODER + "pos_embed", source)[1]
    blocks = _indexed(state, ENCODER + "blocks.")
    if not blocks or blocks != list(range(len(blocks))):
        raise not_a_checkpoint(source, "its image encoder blocks are not numbered 0, 1, 2, ...")
    spans = [_shape(state, f"{ENCODER}blocks.{i}.attn.rel_pos_h", source) for i in blocks]
    head_dim = int(spans[0][1])
    global_blocks = [i for i, span in zip(blocks, spans) if span[0] == 2 * grid - 1]
    windows = {int(span[0] + 1) // 2 for span in spans if span[0] != 2 * grid - 1}
    if len(windows) > 1:
        raise not_a_checkpoint(source, f"its encoder blocks mix window sizes {sorted(windows)}")
    hidden = _shape(state, f"{ENCODER}blocks.0.mlp.lin1.weight", source)[0]
    decoder_layers = _indexed(state, "mask_decoder.transformer.layers.")
    iou_layers = _indexed(state, "mask_decoder.iou_prediction_head.layers.")
    inferred = dict(
        encoder_embed_dim=int(embed_dim), encoder_depth=len(blocks), encoder_num_heads=int(embed_dim) // head_dim,
        encoder_global_attn_indexes=global_blocks, encoder_window_size=windows.pop() if windows else 14,
        encoder_mlp_ratio=float(hidden) / float(embed_dim),
        encoder_qkv_bias=f"{ENCODER}blocks.0.attn.qkv.bias" in state, patch_size=int(patch),
        image_size=int(grid) * int(patch),
        prompt_embed_dim=int(_shape(state, ENCODER + "neck.0.weight", source)[0]),
        mask_in_chans=int(_shape(state, "prompt_encoder.mask_downscaling.3.weight", source)[0]),
        decoder_depth=len(decoder_layers),
        decoder_mlp_dim=int(_shape(state, "mask_decoder.transformer.layers.0.mlp.lin1.weight", source)[0]),
        decoder_num_heads=8, iou_head_depth=len(iou_layers),
        iou_head_hidden_dim=int(_shape(state, "mask_decoder.iou_prediction_head.layers.0.weight", source)[0]),
        num_multimask_outputs=int(_shape(state, "mask_decoder.mask_tokens.weight", source)[0]) - 1,
    )
    for name, value in (overrides or {}).items():
        if name not in inferred:
            known = ", ".join(field.name for field in dataclasses.fields(SamArchitecture))
            raise PromptRegisterError(f"unknown SAM architecture field {name!r} in {source}'s sidecar; "
                                      f"known: {known}")
        inferred[name] = value
    return SamArchitecture(**inferred)


def sidecar_overrides(checkpoint: Path) -> Dict:
    """The fields of `<stem>.json` beside a checkpoint, or {} when there is none."""
    sidecar = Path(checkpoint).with_suffix(".json")
    if not sidecar.exists():
        return {}
    try:
        values = json.loads(sidecar.read_text())
    except (OSError, ValueError) as error:
        raise PromptRegisterError(f"could not read the architecture sidecar {sidecar}: {error}") from None
    if not isinstance(values, dict):
        raise PromptRegisterError(f"{sidecar} must hold a JSON object of architecture fields")
    return values
