"""What the cache pass turns decoded pixels and prompts into: the denoiser's inputs.

``PixelEncoder``: a pixel-space model trains on the pixels themselves, no condition.
``FamilyEncoder``: a latent model family's own VAE and text encoders (prefopt/models/families.py):
scaled latents and the condition tensors per prompt, computed in mini-batches on the run's device.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

import torch

from prefopt.data.preference import flatten

FROZEN_PARTS = ("vae", "text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2", "tokenizer_3",
                "image_encoder", "image_processor")


class PixelEncoder:
    has_cond = False
    has_image_cond = False
    fingerprint = "pixels"

    def latents(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.float()

    def prompts(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {}


class FamilyEncoder:
    has_cond = True

    def __init__(self, fam, path: Path, size: int, device="cpu", dtype: torch.dtype = torch.float32, batch_size: int = 8):
        self.fam, self.path, self.size, self.device, self.dtype = fam, Path(path), size, device, dtype
        self.batch_size, self._pipe = batch_size, None
        self.prompts_encoded = 0  # text-encoder inputs so far (a prompt shared by many rows counts once)

    @cached_property
    def has_image_cond(self) -> bool:
        """Image-to-video: each row carries its reference image's condition (Family.image_cond)."""
        from prefopt.models.families import image_to_video

        return image_to_video(self.fam, self.path)

    @property
    def fingerprint(self) -> str:
        """The family, dtype and every file of the VAE and text encoders (path, size, mtime)."""
        digest = hashlib.sha256(f"{self.fam.name}|{self.path.resolve()}|{self.dtype}".encode())
        for part in FROZEN_PARTS:
            for file in sorted((self.path / part).rglob("*")) if (self.path / part).is_dir() else []:
                stat = file.stat()
                digest.update(f"{file.relative_to(self.path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:24]

    @property
    def pipe(self):
        if self._pipe is None:
            from prefopt.models.builders import load_pretrained
            from prefopt.models.families import load_encoders

            self._pipe = load_pretrained(lambda: load_encoders(self.fam, self.path, self.dtype), self.path).to(self.device)
        return self._pipe

    @torch.no_grad()
    def latents(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.fam.latents(self.pipe, pixels[i:i + self.batch_size]).float().cpu()
                          for i in range(0, len(pixels), self.batch_size)])

    @torch.no_grad()
    def prompts(self, texts: list[str]) -> dict[str, torch.Tensor]:
        self.prompts_encoded += len(texts)
        return self._batched(lambda batch: self.fam.prompts(self.pipe, batch, (self.size, self.size)), texts)

    @torch.no_grad()
    def image_cond(self, images: torch.Tensor, frames: int) -> dict[str, torch.Tensor]:
        """The per-row condition of each row's reference image (B, 3, H, W) for clips of ``frames`` (flattened keys)."""
        return self._batched(lambda chunk: self.fam.image_cond(self.pipe, chunk, frames), images)

    def _batched(self, encode, items) -> dict[str, torch.Tensor]:
        """``encode`` over ``items`` in mini-batches, its (nested) outputs concatenated on the CPU."""
        parts: dict[str, list[torch.Tensor]] = {}
        for i in range(0, len(items), self.batch_size):
            for key, value in flatten(encode(items[i:i + self.batch_size])).items():
                parts.setdefault(key, []).append(value.float().cpu())
        return {key: torch.cat(values) for key, values in parts.items()}
