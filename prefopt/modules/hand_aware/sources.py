"""The hand masks of a training dataset, by ``hand_aware.source``, fitted to the latent grid.

    renderer    SynthHands: the masks its builders attach (the renderer's for renders, the
                detector's for model samples)
    mediapipe   HandMasker on the dataset's RGB images in [-1, 1] (videos: tracking mode), cached
                by content under ``$PREFOPT_CACHE/hand_masks``
    file        a safetensors file (``hand_aware.path``) of ``mask_w`` (and ``mask_l``) tensors,
                (N, 1, H, W) or (N, 1, F, H, W), one row per dataset row
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from prefopt.errors import ConfigError
from prefopt.modules.hand_aware import HandAware
from prefopt.modules.hand_aware.grid import to_latent_grid

log = logging.getLogger("prefopt")


def _temporal_compression(mask_frames: int, latent_frames: int, where: str) -> int:
    if latent_frames == 1 or mask_frames == latent_frames:
        return 1
    compression, rest = divmod(mask_frames - 1, latent_frames - 1)
    if rest:
        raise ConfigError(f"{where}: {mask_frames} mask frames do not map onto {latent_frames} latent frames")
    return compression


def fit_to_sample(mask: torch.Tensor, sample_shape: tuple[int, ...], dilate: int, where: str) -> torch.Tensor:
    """Masks (N, 1, H, W) / (N, 1, F, H, W) -> the samples' grid (N, 1, h, w) / (N, 1, T, h, w)."""
    if mask.dim() != len(sample_shape) + 1 or mask.shape[1] != 1:
        raise ConfigError(f"{where}: masks of shape {tuple(mask.shape)} do not fit samples of shape {sample_shape}")
    compression = _temporal_compression(mask.shape[2], sample_shape[1], where) if mask.dim() == 5 else 1
    return to_latent_grid(mask, tuple(sample_shape[-2:]), compression, dilate)


def _mediapipe_masks(images: torch.Tensor, hand_aware: HandAware, cache_dir: Path) -> torch.Tensor:
    from prefopt.modules.hand_aware.cache import mask_of_image
    from prefopt.modules.hand_aware.masker import HandMasker

    if images.shape[1] != 3:
        raise ConfigError(f"hand_aware.source=mediapipe needs RGB samples, got {images.shape[1]} channels "
                          "(latent data: give masks of the source pictures with hand_aware.source=file)")
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    with HandMasker(margin=hand_aware.margin, feather=hand_aware.feather) as masker:
        if pixels.dim() == 4:
            masks = [mask_of_image(p.permute(1, 2, 0).numpy(), masker, cache_dir) for p in pixels]
        else:  # videos (N, 3, F, H, W): tracking mode, not cached per frame
            masks = [masker.video(p.permute(1, 2, 3, 0).numpy())[0] for p in pixels]
    return torch.from_numpy(np.stack(masks)).float().unsqueeze(1)


def pixel_masks(pixels: torch.Tensor, hand_aware: HandAware, cache_dir: Path, sample_shape: tuple[int, ...]) -> torch.Tensor:
    """mediapipe's masks of ``pixels`` (RGB in [-1, 1]) fitted to ``sample_shape`` (a latent grid)."""
    raw = _mediapipe_masks(pixels, hand_aware, cache_dir)
    return fit_to_sample(raw, sample_shape, hand_aware.dilate, "hand_aware.source=mediapipe")


def file_masks(hand_aware: HandAware, dataset) -> dict[str, torch.Tensor]:
    """``hand_aware.path``'s masks (one row per dataset row) fitted to the dataset's samples."""
    keys = ["mask_w", "mask_l"] if dataset.paired else ["mask_w"]
    masks = {k: fit_to_sample(v, dataset.sample_shape, hand_aware.dilate, hand_aware.path)
             for k, v in _stored_masks(hand_aware.path, keys, len(dataset)).items()}
    return _checked(masks, hand_aware.path)


def _stored_masks(where: str, keys: list[str], rows: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not Path(where).is_file():
        raise ConfigError(f"hand_aware.path: {where}: no such file")
    stored = load_file(where)
    for key in keys:
        if key not in stored:
            raise ConfigError(f"{where}: no tensor {key!r} (has {sorted(stored)})")
        if len(stored[key]) != rows:
            raise ConfigError(f"{where}: {key} has {len(stored[key])} rows, the data has {rows}")
    return {k: stored[k] for k in keys}


def _checked(masks: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    for key, mask in masks.items():
        if not torch.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
            raise ConfigError(f"{where}: {key} has values outside [0, 1]")
    return masks


def hand_masks(dataset, hand_aware: HandAware, cache_dir: Path) -> dict[str, torch.Tensor]:
    """``{"mask_w": ..., "mask_l": ...}`` (``mask_l`` for paired data) on the samples' grid."""
    keys = ["mask_w", "mask_l"] if dataset.paired else ["mask_w"]
    if hand_aware.source == "renderer":
        missing = [k for k in keys if k not in dataset.fields]
        if missing:
            raise ConfigError(f"hand_aware.source=renderer: {dataset.name} carries no hand masks "
                              "(SynthHands data does; use hand_aware.source=mediapipe or file)")
        raw, where = {k: dataset.fields[k] for k in keys}, dataset.name
    elif hand_aware.source == "file":
        where = hand_aware.path
        raw = _stored_masks(where, keys, len(dataset))
    else:
        where = "hand_aware.source=mediapipe"
        images = {"mask_w": "winner", "mask_l": "loser"}
        raw = {k: _mediapipe_masks(dataset.fields[images[k]], hand_aware, cache_dir) for k in keys}
        found = sum(int(mask.flatten(1).amax(dim=1).gt(0).sum()) for mask in raw.values())
        total = sum(len(mask) for mask in raw.values())
        (log.warning if found == 0 else log.info)("hand_aware.source=mediapipe: hands found in %d of %d images of %s",
                                                 found, total, dataset.name)
    return _checked({k: fit_to_sample(v, dataset.sample_shape, hand_aware.dilate, where) for k, v in raw.items()}, where)
