"""Shared fixtures: tiny diffusers models saved and re-loaded through ``from_pretrained``."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("models")
    os.environ["PREFOPT_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_unet_dir(tmp_path_factory):
    """A tiny UNet2DConditionModel (SD-style, cross-attention) saved with save_pretrained."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=8, norm_num_groups=8)
    path = tmp_path_factory.mktemp("tiny_unet")
    unet.save_pretrained(path)
    return path
