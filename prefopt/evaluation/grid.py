"""PNG grids of samples that a person can judge: each tile framed green (good) or red, or blue
(given to the model, e.g. an image-to-video model's reference image)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from prefopt.io import atomic_write


def save_grid(samples: torch.Tensor, good: torch.Tensor, path: Path, columns: int = 16, scale: int = 4,
              given: torch.Tensor | None = None) -> None:
    """A PNG of ``samples`` (N, 3, H, W) in [-1, 1], each upscaled and framed green (good) or red;
    tiles where ``given`` (N,) is true are framed blue."""
    from PIL import Image

    n, _, h, w = samples.shape
    rows = math.ceil(n / columns)
    cell_h, cell_w = h * scale + 2, w * scale + 2
    canvas = torch.zeros(3, rows * cell_h, columns * cell_w)
    frame = {True: torch.tensor([0.1, 0.8, 0.1]), False: torch.tensor([0.8, 0.1, 0.1]),
             "given": torch.tensor([0.2, 0.4, 1.0])}
    for i in range(n):
        r, c = divmod(i, columns)
        tile = ((samples[i].float() + 1) / 2).repeat_interleave(scale, 1).repeat_interleave(scale, 2)
        y, x = r * cell_h, c * cell_w
        colour = frame["given"] if given is not None and bool(given[i]) else frame[bool(good[i])]
        canvas[:, y:y + cell_h, x:x + cell_w] = colour.view(3, 1, 1)
        canvas[:, y + 1:y + cell_h - 1, x + 1:x + cell_w - 1] = tile
    image = Image.fromarray((canvas.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
