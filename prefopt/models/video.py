"""The tiny motion-conditioned video denoiser of SynthHands Animation (``model=tiny_video``).

A diffusers video backbone (``backbone``: WanTransformer3DModel by default, or UNet3DConditionModel)
on pixel-space clips (B, 3, T, H, W) with a learned null text embedding in place of a prompt, and,
when ``modulated``, the temporal motion modulation module (prefopt/modules/temporal_modulation.py)
reading the motion condition per frame:

    forward(sample, timestep, motion=None)        motion (B, C_motion, rate * T, H, W)

A ``ModelMixin``/``ConfigMixin`` like any diffusers model: written with ``save_pretrained`` and read
back with ``from_pretrained``. With ``motion=None`` (or ``modulated=False``) it is the plain backbone.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.unets.unet_3d_condition import UNet3DConditionOutput
from torch import nn

from prefopt.errors import ConfigError
from prefopt.modules.temporal_modulation import TemporalMotionModulation

BACKBONES = ("WanTransformer3DModel", "UNet3DConditionModel")


class MotionVideoModel(ModelMixin, ConfigMixin):
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, backbone: str = "WanTransformer3DModel", backbone_config: dict | None = None,
                 modulated: bool = True, motion_channels: int = 3, compression: int = 1, rate: int = 1,
                 heads: int = 1):
        import diffusers

        super().__init__()  # submodule names differ from config keys: diffusers reads config keys first
        if backbone not in BACKBONES:
            raise ConfigError(f"model.config.backbone: one of {list(BACKBONES)}, got {backbone!r}")
        self.video = getattr(diffusers, backbone)(**(backbone_config or {}))
        config = self.video.config
        text_dim = config.text_dim if backbone == "WanTransformer3DModel" else config.cross_attention_dim
        self.null_text = nn.Parameter(torch.zeros(1, 1, text_dim))
        patch = config.patch_size[-1] if backbone == "WanTransformer3DModel" else 1
        self.modulation = (TemporalMotionModulation(self.video, motion_channels, compression=compression, rate=rate,
                                                    patch=patch, heads=heads) if modulated else None)

    def forward(self, sample: torch.Tensor, timestep, motion: torch.Tensor | None = None, return_dict: bool = True):
        text = self.null_text.to(sample.dtype).expand(sample.shape[0], -1, -1)
        if self.modulation is None or motion is None:
            out = self.video(sample, timestep, encoder_hidden_states=text, return_dict=False)[0]
        else:
            with self.modulation.condition(motion.to(sample.dtype)):
                out = self.video(sample, timestep, encoder_hidden_states=text, return_dict=False)[0]
        return UNet3DConditionOutput(sample=out) if return_dict else (out,)


CLASSES = {"MotionVideoModel": MotionVideoModel}
