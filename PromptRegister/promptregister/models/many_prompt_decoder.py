"""SAM's mask decoder evaluated for many prompts on one image at once, exactly
(up to float rounding), with most of the image-side work shared.

The stock decoder copies the 64 x 64 x 256 image embedding once per prompt and
runs every projection of the two-way transformer on all 4096 image tokens of
every copy. In everything mode only the prompt differs, so:

- The image tokens of each prompt are kept in a factored form
  ``keys = scale * base + coeffs @ rows + const``: ``base`` (N x C) is shared
  by all prompts; what a prompt adds is the image-to-token attention output,
  which is ``probabilities (N x heads*tokens) @ rows (heads*tokens x C)``, i.e.
  low rank. A LayerNorm keeps the form: centring and the channel gain act on
  ``base`` (shared) and ``rows`` (small); the per-token 1/std multiplies
  ``scale`` and ``coeffs``. Its variance is computed from Gram matrices.
- Every projection of ``base`` (and of the positional encoding) is computed once
  per slice; per prompt only small matrices are projected.
- Attention between the few prompt tokens and the image tokens is evaluated
  through the factors, never forming per-prompt N x C tensors.
- The IoU head needs only the output tokens, so the output upscaling (the
  decoder's most expensive per-prompt step) runs only for the prompts whose
  masks are wanted (`LowResMasks.for_prompts`).

Works for any depth / width / head count of segment-anything's
`TwoWayTransformer` (MobileSAM uses the same classes' code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class RowBlock:
    """Rows [start, stop) of FactoredTokens.rows. An attention block's rows are
    per-head values times a shared matrix (``values (P, T, H, d)`` x
    ``SharedImage.basis(basis)``), which makes their products with the shared
    base cheap; rows without that structure (constants) have ``values=None``."""

    start: int
    stop: int
    values: Optional[torch.Tensor] = None
    basis: Tuple[torch.nn.Module, ...] = ()


@dataclass
class FactoredTokens:
    """Image tokens of P prompts: scale[p, n] * base[n] + coeffs[p, :, n] @ rows[p] + const[p].

    coeffs is stored rank-major, (P, r, N), so that every product and reduction
    over it runs along the long, contiguous image-token axis."""

    base_level: int
    scale: torch.Tensor   # (P, N)
    coeffs: torch.Tensor  # (P, r, N)
    rows: torch.Tensor    # (P, r, C)
    const: torch.Tensor   # (P, C)
    blocks: Tuple[RowBlock, ...] = ()

    @property
    def rank(self) -> int:
        return self.coeffs.shape[1]

    def subset(self, index: torch.Tensor) -> "FactoredTokens":
        blocks = tuple(RowBlock(b.start, b.stop, None if b.values is None else b.values[index], b.basis)
                       for b in self.blocks)
        return FactoredTokens(self.base_level, self.scale[index], self.coeffs[index], self.rows[index],
                              self.const[index], blocks)


class SharedImage:
    """The prompt-independent side of one image: the chain of LayerNorm'd bases
    and their projections, computed on first use and reused by every batch."""

    def __init__(self, transformer: torch.nn.Module, tokens: torch.Tensor, positional: torch.Tensor):
        self.transformer = transformer
        self.positional = positional  # (N, C)
        self.bases = [tokens]         # base of level k: after k LayerNorms of the image tokens
        self._centred: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}
        self._projected: Dict[Tuple[int, int, bool], torch.Tensor] = {}
        self._bases_of_rows: Dict[tuple, torch.Tensor] = {}

    def base(self, level: int) -> torch.Tensor:
        return self.bases[level]

    def centred(self, level: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(base minus its per-token channel mean, squared norms of those rows)."""
        if level not in self._centred:
            base = self.bases[level]
            centred = base - base.mean(dim=1, keepdim=True)
            self._centred[level] = (centred, centred.square().sum(dim=1))
        return self._centred[level]

    def normalised_level(self, level: int, norm: torch.nn.LayerNorm) -> int:
        """Level of the base after `norm` (centred base times the channel gain)."""
        if level + 1 == len(self.bases):
            self.bases.append(self.centred(level)[0] * norm.weight)
        return level + 1

    def basis(self, key: Tuple[torch.nn.Module, ...]) -> torch.Tensor:
        """(H, d, C): an attention's output projection per head, then for every LayerNorm in the key since,
        centred over the channels and times the norm's gain."""
        if key not in self._bases_of_rows:
            if len(key) == 1:
                attention = key[0]
                heads = attention.num_heads
                weight = attention.out_proj.weight.T
                basis = weight.reshape(heads, weight.shape[0] // heads, weight.shape[1])
            else:
                basis = self.basis(key[:-1])
                basis = (basis - basis.mean(dim=-1, keepdim=True)) * key[-1].weight
            self._bases_of_rows[key] = basis
        return self._bases_of_rows[key]

    def centred_times_basis(self, level: int, key: Tuple[torch.nn.Module, ...]) -> torch.Tensor:
        """centred base(level) @ basis(key)^T, (N, H, d)."""
        cache_key = (level, key)
        if cache_key not in self._bases_of_rows:
            basis = self.basis(key)
            product = self.centred(level)[0] @ basis.flatten(0, 1).T
            self._bases_of_rows[cache_key] = product.view(-1, *basis.shape[:2])
        return self._bases_of_rows[cache_key]

    def projected(self, level: int, linear: torch.nn.Linear) -> torch.Tensor:
        """base(level) @ W^T, (N, D); no bias."""
        key = (level, id(linear), False)
        if key not in self._projected:
            self._projected[key] = self.bases[level] @ linear.weight.T
        return self._projected[key]

    def positional_projected(self, linear: torch.nn.Linear) -> torch.Tensor:
        """positional @ W^T + b, (N, D)."""
        key = (-1, id(linear), True)
        if key not in self._projected:
            self._projected[key] = F.linear(self.positional, linear.weight, linear.bias)
        return self._projected[key]


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.reshape(*x.shape[:-1], heads, x.shape[-1] // heads)


def _project_factored(shared: SharedImage, keys: FactoredTokens, linear: torch.nn.Linear,
                      with_positional: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Factors of linear(keys [+ positional]) = scale * base part + coeffs @ rows part + per-prompt part
    [+ positional part]: (base part (N, D), rows part (P, r, D), per-prompt part (P, D)). The bias goes with the
    positional part when there is one (see `SharedImage.positional_projected`)."""
    base_part = shared.projected(keys.base_level, linear)
    rows_part = keys.rows @ linear.weight.T
    const_part = keys.const @ linear.weight.T
    if not with_positional:
        const_part = const_part + linear.bias
    return base_part, rows_part, const_part


def _scores_against_image(shared: SharedImage, keys: FactoredTokens, linear: torch.nn.Linear,
                          tokens: torch.Tensor) -> torch.Tensor:
    """tokens . linear(keys + positional) per head, for every prompt: (P, H, T, N), the image tokens last and
    contiguous. tokens: (P, T, H, d), already projected and scaled."""
    n_prompts, n_tokens, heads, _ = tokens.shape
    base, rows, const = _project_factored(shared, keys, linear, with_positional=True)
    positional = shared.positional_projected(linear)
    if keys.base_level == 0:  # the image tokens before any LayerNorm: scale is one, add the positional part first
        scores = torch.einsum("pthd,nhd->phtn", tokens, _heads(base + positional, heads))
    else:
        scores = torch.einsum("pthd,nhd->phtn", tokens, _heads(base, heads)).mul_(keys.scale[:, None, None, :])
        scores += torch.einsum("pthd,nhd->phtn", tokens, _heads(positional, heads))
    scores += torch.einsum("pthd,phd->pht", tokens, _heads(const, heads))[..., None]
    if keys.rank:
        through_rows = torch.einsum("pthd,prhd->phtr", tokens, _heads(rows, heads))
        scores += (through_rows.reshape(n_prompts, heads * n_tokens, -1) @ keys.coeffs).view(scores.shape)
    return scores


def token_to_image(attention: torch.nn.Module, shared: SharedImage, queries: torch.Tensor,
                   keys: FactoredTokens) -> torch.Tensor:
    """attention(q=queries, k=keys + positional, v=keys) for every prompt; (P, T, C)."""
    heads = attention.num_heads
    per_head = attention.internal_dim // heads
    n_prompts, n_tokens = queries.shape[:2]
    q = _heads(attention.q_proj(queries), heads) / math.sqrt(per_head)           # (P, T, H, d)
    probabilities = torch.softmax(_scores_against_image(shared, keys, attention.k_proj, q), dim=-1)

    base_v, rows_v, const_v = _project_factored(shared, keys, attention.v_proj, with_positional=False)
    weights = probabilities if keys.base_level == 0 else probabilities * keys.scale[:, None, None, :]
    out = torch.einsum("phtn,nhd->pthd", weights, _heads(base_v, heads))
    out += _heads(const_v, heads)[:, None]  # probabilities sum to one
    if keys.rank:
        mixed = (probabilities.reshape(n_prompts, heads * n_tokens, -1) @ keys.coeffs.transpose(1, 2)).view(
            n_prompts, heads, n_tokens, -1)                                         # (P, H, T, r)
        out += torch.einsum("phtr,prhd->pthd", mixed, _heads(rows_v, heads))
    return attention.out_proj(out.reshape(n_prompts, n_tokens, heads * per_head))


def image_to_token(attention: torch.nn.Module, shared: SharedImage, keys: FactoredTokens,
                   token_keys: torch.Tensor, token_values: torch.Tensor) -> FactoredTokens:
    """keys + attention(q=keys + positional, k=token_keys, v=token_values), still factored."""
    heads = attention.num_heads
    per_head = attention.internal_dim // heads
    n_prompts, n_tokens = token_keys.shape[:2]
    k = _heads(attention.k_proj(token_keys), heads) / math.sqrt(per_head)          # (P, T, H, d)
    v = _heads(attention.v_proj(token_values), heads)
    # softmax over the few tokens (dim 2), computed along the contiguous image tokens
    scores = _scores_against_image(shared, keys, attention.q_proj, k)
    scores -= scores.amax(dim=2, keepdim=True)
    probabilities = scores.exp_()
    probabilities /= probabilities.sum(dim=2, keepdim=True)
    probabilities = probabilities.reshape(n_prompts, heads * n_tokens, -1)         # (P, H*T, N)

    # out_proj(concat_h P_h v_h) = sum_h P_h (v_h W_out,h^T) + b: rows are the per-head values projected out
    basis = shared.basis((attention,))                                              # (H, d, C)
    rows = torch.einsum("pthd,hdc->phtc", v, basis).reshape(n_prompts, heads * n_tokens, -1)
    block = RowBlock(keys.rank, keys.rank + rows.shape[1], values=v, basis=(attention,))
    return FactoredTokens(base_level=keys.base_level, scale=keys.scale,
                          coeffs=torch.cat([keys.coeffs, probabilities], dim=1),
                          rows=torch.cat([keys.rows, rows], dim=1),
                          const=keys.const + attention.out_proj.bias,
                          blocks=keys.blocks + (block,))


def layer_norm(norm: torch.nn.LayerNorm, shared: SharedImage, keys: FactoredTokens) -> FactoredTokens:
    """norm(keys) in factored form; the variance comes from Gram matrices of the factors."""
    n_prompts, n_image = keys.scale.shape
    channels = keys.rows.shape[-1]
    # the constant becomes one more rank-one term, since 1/std varies over the image tokens
    coeffs = torch.cat([keys.coeffs, keys.coeffs.new_ones(n_prompts, 1, n_image)], dim=1)
    rows = torch.cat([keys.rows, keys.const[:, None, :]], dim=1)
    rows = rows - rows.mean(dim=-1, keepdim=True)
    base, base_norms = shared.centred(keys.base_level)
    # |s b + c R|^2 = s^2 |b|^2 + c . (2 s R b + (R R^T) c), with b and R centred over the channels;
    # accumulated block by block to keep the (P, rows, N) temporaries small
    blocks = keys.blocks + (RowBlock(keys.rank, keys.rank + 1),)
    gram = rows @ rows.transpose(1, 2)                                                        # (P, r, r)
    twice_scale = 2.0 * keys.scale[:, None, :]
    squares = keys.scale.square() * base_norms
    for block in blocks:
        partial = _rows_times_centred_base(shared, keys.base_level, block, rows).mul_(twice_scale)
        partial.baddbmm_(gram[:, block.start:block.stop], coeffs)
        squares += partial.mul_(coeffs[:, block.start:block.stop]).sum(dim=1)
    inverse_std = torch.rsqrt(squares.clamp_min(0.0) / channels + norm.eps)                   # (P, N)
    return FactoredTokens(base_level=shared.normalised_level(keys.base_level, norm),
                          scale=keys.scale * inverse_std,
                          coeffs=coeffs.mul_(inverse_std[:, None, :]),
                          rows=rows * norm.weight,
                          const=norm.bias.expand(n_prompts, channels),
                          blocks=tuple(RowBlock(b.start, b.stop, b.values, b.basis + (norm,) if b.basis else ())
                                       for b in blocks))


def _rows_times_centred_base(shared: SharedImage, level: int, block: RowBlock, rows: torch.Tensor) -> torch.Tensor:
    """rows[block] @ centred base(level)^T, (P, rows in block, N); through the shared basis when it has one
    (N T D multiply-adds per prompt instead of N H T C). The base is centred, so centring the rows changes nothing."""
    if block.values is None:
        base = shared.centred(level)[0]
        return rows[:, block.start:block.stop] @ base.T
    values = block.values
    through_basis = shared.centred_times_basis(level, block.basis)
    return torch.einsum("pthd,nhd->phtn", values, through_basis).reshape(values.shape[0], block.stop - block.start, -1)


def materialise(shared: SharedImage, keys: FactoredTokens) -> torch.Tensor:
    """The dense (P, N, C) tokens, for the prompts whose masks are needed."""
    dense = keys.scale[..., None] * shared.base(keys.base_level)
    dense = torch.baddbmm(dense, keys.coeffs.transpose(1, 2), keys.rows)
    return dense + keys.const[:, None, :]


class LowResMasks:
    """Decoder outputs of a batch of prompts: IoU predictions now, masks on request."""

    def __init__(self, decoder: torch.nn.Module, shared: SharedImage, keys: FactoredTokens,
                 hyper_in: torch.Tensor, iou: torch.Tensor, grid_shape: Tuple[int, int], mask_slice: slice):
        self._decoder = decoder
        self._shared = shared
        self._keys = keys
        self._hyper_in = hyper_in
        self._grid_shape = grid_shape
        self._mask_slice = mask_slice
        self.iou = iou[:, mask_slice]  # (P, masks per prompt)

    def for_prompts(self, index: torch.Tensor) -> torch.Tensor:
        """Low-resolution logits (len(index), masks per prompt, 4h, 4w) of the chosen prompts."""
        keys = self._keys
        tokens = materialise(self._shared, keys.subset(index))
        count, _, channels = tokens.shape
        src = tokens.transpose(1, 2).reshape(count, channels, *self._grid_shape)
        upscaled = self._decoder.output_upscaling(src)
        hyper_in = self._hyper_in[index]
        logits = (hyper_in @ upscaled.flatten(2)).view(count, -1, *upscaled.shape[-2:])
        return logits[:, self._mask_slice]


class ManyPromptDecoder:
    """Decoder for many sparse prompts (points / boxes, no mask input) on one image embedding."""

    def __init__(self, mask_decoder: torch.nn.Module, image_embedding: torch.Tensor, image_pe: torch.Tensor,
                 dense_embedding: torch.Tensor):
        """image_embedding, image_pe: (C, h, w); dense_embedding: the prompt encoder's dense output for one
        prompt without mask input, (C, h, w) (the same for every prompt)."""
        self.decoder = mask_decoder
        channels, height, width = image_embedding.shape
        self.grid_shape = (height, width)
        tokens = (image_embedding + dense_embedding).flatten(1).T.contiguous()
        positional = image_pe.flatten(1).T.contiguous()
        self.shared = SharedImage(mask_decoder.transformer, tokens, positional)

    @torch.no_grad()
    def __call__(self, sparse_embeddings: torch.Tensor, multimask: bool) -> LowResMasks:
        decoder = self.decoder
        transformer = decoder.transformer
        shared = self.shared
        n_prompts = sparse_embeddings.shape[0]
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        prompt_tokens = torch.cat([output_tokens.expand(n_prompts, -1, -1), sparse_embeddings], dim=1)
        n_image, channels = shared.base(0).shape
        dtype, device = prompt_tokens.dtype, prompt_tokens.device
        keys = FactoredTokens(base_level=0, scale=torch.ones(n_prompts, n_image, dtype=dtype, device=device),
                              coeffs=torch.zeros(n_prompts, 0, n_image, dtype=dtype, device=device),
                              rows=torch.zeros(n_prompts, 0, channels, dtype=dtype, device=device),
                              const=torch.zeros(n_prompts, channels, dtype=dtype, device=device))
        queries = prompt_tokens
        for layer in transformer.layers:
            if layer.skip_first_layer_pe:
                queries = layer.self_attn(q=queries, k=queries, v=queries)
            else:
                q = queries + prompt_tokens
                queries = queries + layer.self_attn(q=q, k=q, v=queries)
            queries = layer.norm1(queries)
            queries = layer.norm2(queries + token_to_image(layer.cross_attn_token_to_image, shared,
                                                           queries + prompt_tokens, keys))
            queries = layer.norm3(queries + layer.mlp(queries))
            keys = image_to_token(layer.cross_attn_image_to_token, shared, keys,
                                  token_keys=queries + prompt_tokens, token_values=queries)
            keys = layer_norm(layer.norm4, shared, keys)
        queries = queries + token_to_image(transformer.final_attn_token_to_image, shared,
                                           queries + prompt_tokens, keys)
        queries = transformer.norm_final_attn(queries)

        iou = decoder.iou_prediction_head(queries[:, 0, :])
        mask_tokens = queries[:, 1:1 + decoder.num_mask_tokens, :]
        hyper_in = torch.stack([mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)],
                               dim=1)
        mask_slice = slice(1, None) if multimask else slice(0, 1)
        return LowResMasks(decoder, shared, keys, hyper_in, iou, self.grid_shape, mask_slice)
