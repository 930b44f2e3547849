"""Tiny random-init judge folders, written with ``save_pretrained`` as a real judge's folder is laid out."""

from __future__ import annotations

from pathlib import Path

import torch

TINY = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
VISION = dict(TINY, image_size=32, patch_size=8)


def clip_folder(folder: Path, seed: int = 0) -> Path:
    """A CLIPModel folder (model, byte-level tokenizer, 32-px image processor): PickScore, HPSv2, CLIP score."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from prefopt.models.tiny_pipelines import tokenizer

    torch.manual_seed(seed)
    text = dict(TINY, vocab_size=514, max_position_embeddings=16, bos_token_id=512, eos_token_id=513, pad_token_id=513)
    CLIPModel(CLIPConfig(text_config=text, vision_config=VISION, projection_dim=16)).save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return Path(folder)
