"""Hand masks on the latent grid, and the region weights the core's per-sample error reads.

    W = 1 + (lambda - 1) * M        (IPA's Hand-Aware Local Optimization, HALO: lambda = 10)

Masks are resized by area pooling: a latent cell's value is the hand's share of the pixels (and, in
video, of the frames) it covers. A causal video VAE with temporal compression c encodes F = 1 + c (T - 1)
frames into T latent frames: latent frame 0 is frame 0 alone, latent frame j > 0 covers frames
c (j - 1) + 1 ... c j. ``dilate`` then grows the mask by that many latent cells (max pooling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prefopt.errors import ConfigError


def latent_frames(frames: int, compression: int) -> int:
    """T latent frames of a causal VAE for ``frames`` = 1 + compression (T - 1) input frames."""
    if compression < 1 or (frames - 1) % compression:
        raise ConfigError(f"{frames} frames do not fit a causal VAE with temporal compression {compression}: "
                          f"need 1 + {compression} k frames")
    return 1 + (frames - 1) // compression


def to_latent_grid(mask: torch.Tensor, size: tuple[int, int], temporal_compression: int = 1,
                   dilate: int = 0) -> torch.Tensor:
    """Masks (N, 1, H, W) or (N, 1, F, H, W) in [0, 1] -> (N, 1, h, w) or (N, 1, T, h, w)."""
    mask = mask.float()
    if mask.dim() == 5:
        frames = mask.shape[2]
        latent = latent_frames(frames, temporal_compression)
        if temporal_compression > 1:
            rest = mask[:, :, 1:].unflatten(2, (latent - 1, temporal_compression)).mean(dim=3)
            mask = torch.cat([mask[:, :, :1], rest], dim=2)
        n, c, t = mask.shape[:3]
        pooled = F.interpolate(mask.transpose(1, 2).flatten(0, 1), size=size, mode="area")
        grid = pooled.unflatten(0, (n, t)).transpose(1, 2)
    elif mask.dim() == 4:
        grid = F.interpolate(mask, size=size, mode="area")
    else:
        raise ValueError(f"a mask is (N, 1, H, W) or (N, 1, F, H, W), got shape {tuple(mask.shape)}")
    if dilate > 0:
        kernel = (1, 2 * dilate + 1, 2 * dilate + 1) if grid.dim() == 5 else 2 * dilate + 1
        padding = (0, dilate, dilate) if grid.dim() == 5 else dilate
        pool = F.max_pool3d if grid.dim() == 5 else F.max_pool2d
        grid = pool(grid, kernel, stride=1, padding=padding)
    return grid


def region_weights(mask: torch.Tensor, weight: float, reference_frame: bool = False) -> torch.Tensor:
    """W = 1 + (weight - 1) M; ``reference_frame``: latent frame 0 of a video (the conditioning image
    of an image-to-video model) keeps weight 1."""
    weights = 1 + (weight - 1) * mask.float()
    if reference_frame:
        if weights.dim() != 5:
            raise ConfigError("hand_aware.reference_frame applies to video (N, C, T, H, W) data only")
        weights[:, :, 0] = 1
    return weights
