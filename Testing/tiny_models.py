"""Tiny models built from the real packages' classes with seeded random weights.

They prove plumbing, shapes, coordinates, caching and loading on machines that
can never download real weights (see ../shared/DESIGN.md, "Testing without
model weights"). Recipes follow ../shared/NOTES.md.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import torch

TINY_SAM_ARCHITECTURE = "tiny_vit_test"


def build_tiny_sam(seed: int = 0) -> torch.nn.Module:
    """A ~221 k parameter SAM: ViT encoder (depth 2, 256 px input, 16 x 16 grid), real prompt encoder and decoder."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    encoder = ImageEncoderViT(depth=2, embed_dim=64, img_size=256, mlp_ratio=4,
                              norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2, patch_size=16,
                              qkv_bias=True, use_rel_pos=True, global_attn_indexes=[1], window_size=4, out_chans=32)
    prompts = PromptEncoder(embed_dim=32, image_embedding_size=(16, 16), input_image_size=(256, 256),
                            mask_in_chans=16)
    decoder = MaskDecoder(num_multimask_outputs=3,
                          transformer=TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64, num_heads=2),
                          transformer_dim=32, iou_head_depth=3, iou_head_hidden_dim=64)
    return Sam(image_encoder=encoder, prompt_encoder=prompts, mask_decoder=decoder,
               pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()


def hf_offline() -> None:
    """Hugging Face code must never try the network in tests."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def save_tiny_bert(folder: Path) -> Path:
    """A tiny BERT (config, vocab.txt, weights) in `folder`, usable as a text encoder by both GroundingDINOs."""
    from transformers import BertConfig, BertModel

    hf_offline()
    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "prostate", "bladder", "hole", "head", "dog",
             "middle", "correspond", "a", "the", "gland", "brain"]
    words += [f"w{i}" for i in range(64 - len(words))]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256)
    BertModel(config).save_pretrained(folder)
    return folder


def save_tiny_hf_grounding_dino(folder: Path) -> Path:
    """A ~1 M parameter transformers GroundingDINO with its processor, saved as a model folder."""
    from transformers import (BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    hf_offline()
    bert = save_tiny_bert(folder / "bert")
    tokenizer = BertTokenizer.from_pretrained(str(bert))
    backbone = SwinConfig(embed_dim=24, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=7,
                          out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=256)
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=64, encoder_layers=1,
                                 decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=20,
                                 encoder_attention_heads=2, decoder_attention_heads=2, max_text_len=256)
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(config).eval()
    target = folder / "grounding-dino-tiny-test"
    model.save_pretrained(target)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 256})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(target)
    return target


def tiny_original_gdino_overrides(bert_folder: Path) -> dict:
    """Overrides that shrink the original GroundingDINO's transformer (the Swin-T backbone stays full size)."""
    return {"text_encoder_type": str(bert_folder), "enc_layers": 1, "dec_layers": 1, "num_queries": 20,
            "dim_feedforward": 64, "use_checkpoint": False, "use_transformer_ckpt": False}


def save_tiny_sam_checkpoint(folder: Path, seed: int = 0) -> Path:
    """The tiny SAM as a user-style checkpoint: `tiny_sam.pth` plus the `tiny_sam.json` sidecar naming the one
    field its tensors cannot tell (the mask decoder's head count), for `--model custom`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny_sam.pth"
    torch.save(build_tiny_sam(seed=seed).state_dict(), path)
    path.with_suffix(".json").write_text('{"decoder_num_heads": 2}\n')
    return path


def main() -> None:
    """Write the tiny models to a folder, so `promptregister register` can be tried end to end through the real
    SAM and GroundingDINO classes on a machine without model weights (random weights: plumbing, not accuracy)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", required=True, type=Path, help="folder to write the tiny models into")
    args = parser.parse_args()
    sam = save_tiny_sam_checkpoint(args.out)
    detector = save_tiny_hf_grounding_dino(args.out / "gdino")
    print(f"tiny SAM: {sam} (+ {sam.with_suffix('.json').name}); use --model custom --checkpoint {sam}")
    print(f"tiny GroundingDINO: {detector}; use --detector-checkpoint {detector}")


if __name__ == "__main__":
    main()
