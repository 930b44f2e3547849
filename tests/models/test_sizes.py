"""The benchmark-size model groups have the real models' shapes."""

from __future__ import annotations

import torch
from commands import compose


def test_sd15_unet_group_is_stable_diffusion_15s_unet():
    """model=sd15_unet (random init, for step-cost benchmarks at scale) has SD 1.5's UNet's
    859,520,964 parameters, the count published for runwayml/stable-diffusion-v1-5's unet; built on
    the meta device, so nothing is allocated."""
    from diffusers import UNet2DConditionModel

    model = compose("config", "model=sd15_unet", "logger=none").model
    with torch.device("meta"):
        unet = UNet2DConditionModel(**model.config)
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    assert (unet.config.sample_size, unet.config.cross_attention_dim) == (64, 768)  # 512 px latents, CLIP ViT-L tokens


def test_attention_runs_through_sdpa(model_cache):
    """A UNet2DConditionModel's attention uses PyTorch's scaled_dot_product_attention (diffusers'
    default AttnProcessor2_0), the fused kernel, with no processor to set."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    from prefopt.models import build_model

    denoiser = build_model(compose("config", "model=tiny_sd", "logger=none").model).denoiser
    processors = denoiser.attn_processors
    assert processors and all(isinstance(p, AttnProcessor2_0) for p in processors.values())
