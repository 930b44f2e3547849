"""Temporal motion modulation after Hallo4 (arXiv 2505.23525, fudan-generative-vision/hallo4): a
motion condition given per video frame (pose latents), or faster (audio features at ``rate``
entries per frame), folded onto the latent temporal grid of a VAE with ``compression``x temporal
compression, and injected so that the pretrained denoiser is unchanged at step 0.

    cond (B, C, F, H, W), F = rate * T condition frames for T video frames
      -> per condition frame: Conv2d(C -> dim / group, kernel = stride = patch), LayerNorm
      -> causal layout (T = c k + 1): the first condition frame repeated (c - 1) * rate times
      -> channel redistribution: each ``group = c * rate`` consecutive frames folded into channels
         (B, dim / group, F', h, w) -> (B, dim, F' / group, h, w)   ("proportional feature expansion")
      -> the latent grid: one folded frame per latent frame

A video of T frames fits a VAE with temporal compression c as T = c k + 1 (causal, Wan: the first
frame alone in latent frame 0) or T = c k (non-causal); any other T is a one-line error.

Injection (every output projection zero-initialized, so the wrapped model equals the base at step 0):
- transformer denoisers (a ``blocks`` list with ``ffn``, e.g. WanTransformer3DModel): in each block a
  condition cross-attention per latent frame, queries = the pose tokens, keys/values = the video
  tokens entering the FFN, its output added to the FFN input;
- UNet denoisers (``conv_in``, e.g. UNet3DConditionModel, UNetMotionModel): a 1x1 projection of the
  folded condition added to ``conv_in``'s output, frame by frame.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from prefopt.errors import ConfigError


def latent_frames(frames: int, compression: int) -> tuple[int, bool]:
    """(latent frames, causal) of a ``frames``-frame video; a one-line ConfigError if no VAE layout fits."""
    if compression < 1:
        raise ConfigError(f"modulation.compression must be >= 1, got {compression}")
    if frames >= 1 and (frames - 1) % compression == 0 and compression > 1:
        return (frames - 1) // compression + 1, True
    if frames >= 1 and frames % compression == 0:
        return frames // compression, False
    raise ConfigError(f"temporal modulation: {frames} frames do not fit a VAE with {compression}x temporal "
                      f"compression (it takes {compression}k + 1 frames, causal, or {compression}k)")


def fold(cond: torch.Tensor, compression: int, rate: int = 1) -> torch.Tensor:
    """(B, C, rate * T, h, w) -> (B, C * compression * rate, latent frames, h, w); exact (``unfold`` inverts it)."""
    frames, remainder = divmod(cond.shape[2], rate)
    if remainder:
        raise ConfigError(f"temporal modulation: {cond.shape[2]} condition frames are not {rate} per video frame")
    _, causal = latent_frames(frames, compression)
    if causal:
        cond = torch.cat([cond[:, :, :1].expand(-1, -1, (compression - 1) * rate, -1, -1), cond], dim=2)
    group = compression * rate
    batch, channels, length, height, width = cond.shape
    grouped = cond.reshape(batch, channels, length // group, group, height, width).permute(0, 2, 3, 1, 4, 5)
    return grouped.reshape(batch, length // group, group * channels, height, width).transpose(1, 2)  # frame-major


def unfold(folded: torch.Tensor, frames: int, compression: int, rate: int = 1) -> torch.Tensor:
    """The inverse of :func:`fold` for a ``frames``-frame video: (B, C, rate * frames, h, w)."""
    _, causal = latent_frames(frames, compression)
    group = compression * rate
    batch, channels, latent, height, width = folded.shape
    per_frame = folded.transpose(1, 2).reshape(batch, latent, group, channels // group, height, width)
    cond = per_frame.reshape(batch, latent * group, channels // group, height, width).transpose(1, 2)
    return cond[:, :, (compression - 1) * rate:] if causal else cond


class TemporalMotionModulation(nn.Module):
    """The condition path and its zero-initialized injection into ``denoiser`` (see the module docstring).

    ``dim``: the transformer's inner dim, or the channels of the UNet's ``conv_in``; ``patch``: the
    spatial patch that maps the condition onto the denoiser's token (or feature) grid.
    """

    def __init__(self, denoiser: nn.Module, cond_channels: int, compression: int = 4, rate: int = 1,
                 patch: int = 1, heads: int = 1):
        super().__init__()
        self.compression, self.rate = compression, rate
        transformer = hasattr(denoiser, "blocks") and all(hasattr(b, "ffn") for b in denoiser.blocks)
        if transformer:
            dim = denoiser.blocks[0].ffn.net[0].proj.in_features
        elif hasattr(denoiser, "conv_in"):
            dim = denoiser.conv_in.out_channels
        else:
            raise ConfigError(f"modulation: {type(denoiser).__name__} has neither transformer blocks nor conv_in")
        group = compression * rate
        if dim % group:
            raise ConfigError(f"modulation: the denoiser's width {dim} is not divisible by compression x rate = {group}")
        self.patchify = nn.Conv2d(cond_channels, dim // group, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim // group)
        if transformer:
            self.attention = nn.ModuleList(_FrameCrossAttention(dim, heads) for _ in denoiser.blocks)
            self._hooks = [block.ffn.register_forward_pre_hook(self._ffn_hook(i))
                           for i, block in enumerate(denoiser.blocks)]
        else:
            self.project = nn.Conv3d(dim, dim, kernel_size=1)
            nn.init.zeros_(self.project.weight)
            nn.init.zeros_(self.project.bias)
            self._hooks = [denoiser.conv_in.register_forward_hook(self._conv_in_hook)]
        self._cond: torch.Tensor | None = None

    def encode(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, C, rate * T, H, W) -> the folded condition (B, dim, latent frames, H / patch, W / patch)."""
        batch, channels, length, height, width = cond.shape
        frames = self.patchify(cond.transpose(1, 2).reshape(batch * length, channels, height, width))
        frames = self.norm(frames.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        frames = frames.reshape(batch, length, *frames.shape[1:]).transpose(1, 2)
        return fold(frames, self.compression, self.rate)

    @contextlib.contextmanager
    def condition(self, cond: torch.Tensor | None):
        """Within the block, the denoiser's forward passes read ``cond`` (None: no condition, the base model)."""
        self._cond = None if cond is None else self.encode(cond)
        try:
            yield
        finally:
            self._cond = None

    def _ffn_hook(self, index: int):
        def hook(module, args):
            if self._cond is None:
                return None
            hidden = args[0]  # (B, latent frames * N, dim) video tokens entering the FFN
            pose = self._cond.permute(0, 2, 3, 4, 1).flatten(2, 3)  # (B, T', N, dim)
            batch, latent, tokens, dim = pose.shape
            if hidden.shape[1] != latent * tokens:
                raise ConfigError(f"modulation: the condition gives {latent} x {tokens} tokens, the denoiser has "
                                  f"{hidden.shape[1]} (set modulation.patch to the denoiser's patch size)")
            video = hidden.reshape(batch, latent, tokens, dim)
            out = self.attention[index](pose.flatten(0, 1), video.flatten(0, 1).to(pose.dtype))
            return (hidden + out.reshape_as(hidden).to(hidden.dtype), *args[1:])
        return hook

    def _conv_in_hook(self, module, args, output):
        if self._cond is None:
            return None
        added = self.project(self._cond)  # (B, dim, T', h, w)
        if output.dim() == 4:  # frames folded into the batch, (B * T', dim, h, w)
            added = added.transpose(1, 2).flatten(0, 1)
        if added.shape != output.shape:
            raise ConfigError(f"modulation: the condition gives {tuple(added.shape)}, conv_in {tuple(output.shape)}")
        return output + added.to(output.dtype)

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()


class _FrameCrossAttention(nn.Module):
    """Multi-head attention, queries = pose tokens, keys/values = video tokens of the same latent frame;
    the output projection starts at zero."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, pose: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        def split(x):
            return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.query(pose)), split(self.key(video)), split(self.value(video)))
        return self.out(out.transpose(1, 2).flatten(2))
