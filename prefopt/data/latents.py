"""Latents and text embeddings, computed once and cached on disk, so that training a latent model
(``model.family``: sd15, sdxl, animatediff, wan) never runs its VAE or text encoder per step.

``encode_dataset`` turns a pixel dataset with prompts (data=files) into one of VAE latents
(winner, loser) and condition tensors (``cond``: what the denoiser reads besides x_t and t),
through the family's pipeline (prefopt/models/families.py). Hand masks made on the pixels are
fitted onto the latent grid. The result is cached under ``$PREFOPT_CACHE/latents``, keyed by the
data's own cache key, the model folder (its path and the size and mtime of every file of its VAE
and text encoders), the family and the dtype; the file is written to a temporary name and renamed,
so a crash never leaves half a cache.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from prefopt.data.preference import PreferenceDataset, flatten, unflatten
from prefopt.errors import ConfigError
from prefopt.io import save_tensors

log = logging.getLogger("prefopt")
FROZEN_PARTS = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")


def _key(dataset: PreferenceDataset, path: Path, family: str, dtype: torch.dtype) -> str:
    digest = hashlib.sha256(f"{dataset.info['cache_key']}|{path.resolve()}|{family}|{dtype}".encode())
    for part in FROZEN_PARTS:
        for file in sorted((path / part).rglob("*")) if (path / part).is_dir() else []:
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


@torch.no_grad()
def _encode(dataset: PreferenceDataset, fam, pipe, batch_size: int) -> dict[str, torch.Tensor]:
    """``{"winner": latents, "loser": latents, "cond.<name>": tensors}``, all on the CPU."""
    height, width = dataset.sample_shape[-2:]
    prompts = dataset.prompts or [""] * len(dataset)
    keys = [k for k in ("winner", "loser") if k in dataset.fields]
    out: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(dataset), batch_size):
        rows = slice(start, start + batch_size)
        for key in keys:
            out.setdefault(key, []).append(fam.latents(pipe, dataset.fields[key][rows]).float().cpu())
        for key, value in flatten(fam.prompts(pipe, prompts[rows], (height, width))).items():
            out.setdefault(f"cond.{key}", []).append(value.float().cpu())
    return {key: torch.cat(parts) for key, parts in out.items()}


def encode_dataset(dataset: PreferenceDataset, fam, path: Path, cache_dir: Path,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, batch_size: int = 8,
                   dilate: int = 0) -> PreferenceDataset:
    """``dataset`` (pixels in [-1, 1], prompts) as latents and condition tensors, from the cache
    when it holds them. ``dilate``: latent cells by which the fitted hand masks grow."""
    from safetensors.torch import load_file

    from prefopt.models.families import load_encoders
    from prefopt.modules.hand_aware.sources import fit_to_sample

    if "cache_key" not in dataset.info:
        raise ConfigError(f"model.family={fam.name} trains on image or video files (data=files), not {dataset.name}")
    fam.check_sample(dataset.sample_shape, dataset.name)
    cache = Path(cache_dir) / f"{_key(dataset, Path(path), fam.name, dtype)}.safetensors"
    if cache.is_file():
        tensors = load_file(str(cache))
    else:
        pipe = load_encoders(fam, Path(path), dtype).to(device)
        log.info("encoding %d rows of %s with the VAE and text encoder of %s", len(dataset), dataset.name, path)
        tensors = _encode(dataset, fam, pipe, batch_size)
        del pipe
        save_tensors(cache, tensors)
    cond = unflatten({k[len("cond."):]: v for k, v in tensors.items() if k.startswith("cond.")})
    latent_shape = tuple(tensors["winner"].shape[1:])
    masks = {k: fit_to_sample(v, latent_shape, dilate, dataset.name)
             for k, v in dataset.fields.items() if k.startswith("mask_")}
    rewards = {k: v for k, v in dataset.fields.items() if k.startswith("reward_")}
    encoded = PreferenceDataset(tensors["winner"], tensors.get("loser"), **rewards, **masks, name=dataset.name,
                                prompts=dataset.prompts, cond=cond)
    encoded.info = {**dataset.info, "latent_cache": str(cache)}
    return encoded
