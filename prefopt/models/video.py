"""The tiny image-to-video denoiser of SynthHands Animation (``model=tiny_video``).

A diffusers backbone on pixel-space clips (B, 3, T, H, W): ``backbone`` WanTransformer3DModel or
UNet3DConditionModel (with a learned null text embedding in place of a prompt), or UNet2DModel run
frame by frame (frames folded into the batch: the benchmark's base, whose frames are tied together by
their shared reference image and conditions only);
- ``image_to_video``: the reference image enters as extra input channels, concatenated with every
  frame of the noisy clip, as Stable Video Diffusion concatenates its conditioning frame's latent
  (CogVideoX I2V and Wan 2.1 I2V put it on frame 0's channels only, and prefopt's families follow
  them: prefopt/models/calls.py). The backbone reads 2 x 3 channels. Every frame, frame 0 too, is
  denoised at the sample's one noise level, so the loss covers frame 0 as IPA's (W = 1 there) and a
  plain one-timestep backbone serves;
- ``modulated``: the temporal motion modulation module (prefopt/modules/temporal_modulation.py)
  reading the motion condition at ``rate`` entries per frame; with ``audio`` a second module reads
  the 1-channel audio condition at ``audio_rate`` samples per frame, folded the same way.

    forward(sample, timestep, motion=None, audio=None, reference=None)
        motion (B, C_motion, rate * T, H, W), audio (B, 1, audio_rate * T, H, W), reference (B, 3, H, W)

A condition the model was not built to read is ignored: the arms of the modulation study see the
same data. A ``ModelMixin``/``ConfigMixin`` like any diffusers model: written with ``save_pretrained``
and read back with ``from_pretrained``.
"""

from __future__ import annotations

import contextlib

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.unets.unet_3d_condition import UNet3DConditionOutput
from torch import nn

from prefopt.errors import ConfigError
from prefopt.modules.temporal_modulation import TemporalMotionModulation

BACKBONES = ("WanTransformer3DModel", "UNet3DConditionModel", "UNet2DModel")


class MotionVideoModel(ModelMixin, ConfigMixin):
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, backbone: str = "WanTransformer3DModel", backbone_config: dict | None = None,
                 modulated: bool = True, motion_channels: int = 3, compression: int = 1, rate: int = 1,
                 heads: int = 1, image_to_video: bool = False, audio: bool = False, audio_rate: int = 4):
        import diffusers

        super().__init__()  # submodule names differ from config keys: diffusers reads config keys first
        if backbone not in BACKBONES:
            raise ConfigError(f"model.config.backbone: one of {list(BACKBONES)}, got {backbone!r}")
        self.video = getattr(diffusers, backbone)(**(backbone_config or {}))
        config = self.video.config
        if backbone != "UNet2DModel":  # a UNet2DModel reads no text
            text_dim = config.text_dim if backbone == "WanTransformer3DModel" else config.cross_attention_dim
            self.null_text = nn.Parameter(torch.zeros(1, 1, text_dim))
        patch = config.patch_size[-1] if backbone == "WanTransformer3DModel" else 1
        if image_to_video and config.in_channels != 2 * config.out_channels:
            raise ConfigError(f"model.config.backbone_config.in_channels: an image-to-video model reads the clip and "
                              f"its reference, 2 x {config.out_channels}, got {config.in_channels}")
        self.modulation = (TemporalMotionModulation(self.video, motion_channels, compression=compression, rate=rate,
                                                    patch=patch, heads=heads) if modulated else None)
        self.audio_modulation = (TemporalMotionModulation(self.video, 1, compression=compression, rate=audio_rate,
                                                          patch=patch, heads=heads) if modulated and audio else None)

    def forward(self, sample: torch.Tensor, timestep, motion: torch.Tensor | None = None,
                audio: torch.Tensor | None = None, reference: torch.Tensor | None = None, return_dict: bool = True):
        if self.config.image_to_video:
            sample = torch.cat([sample, reference_frames(reference, sample)], dim=1)
        with contextlib.ExitStack() as conditions:
            for module, cond in ((self.modulation, motion), (self.audio_modulation, audio)):
                if module is not None and cond is not None:
                    conditions.enter_context(module.condition(cond.to(sample.dtype)))
            if self.config.backbone == "UNet2DModel":  # frame by frame: frames folded into the batch, clip-major
                batch, frames = sample.shape[0], sample.shape[2]
                timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(batch)
                out = self.video(sample.transpose(1, 2).flatten(0, 1), timestep.repeat_interleave(frames),
                                 return_dict=False)[0].unflatten(0, (batch, frames)).transpose(1, 2)
            else:
                text = self.null_text.to(sample.dtype).expand(sample.shape[0], -1, -1)
                out = self.video(sample, timestep, encoder_hidden_states=text, return_dict=False)[0]
        return UNet3DConditionOutput(sample=out) if return_dict else (out,)


def reference_frames(reference: torch.Tensor | None, sample: torch.Tensor) -> torch.Tensor:
    """The extra input channels of an image-to-video model: ``reference`` (B, C, H, W) on every frame of
    a clip shaped like ``sample`` (B, C, T, H, W)."""
    if reference is None:
        raise ConfigError("an image-to-video model needs its reference image: the data's cond has no 'reference'")
    return reference.to(sample.dtype)[:, :, None].expand_as(sample)


CLASSES = {"MotionVideoModel": MotionVideoModel}
