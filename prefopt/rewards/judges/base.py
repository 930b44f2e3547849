"""What every judge shares: its local folder (checked, one-line errors), the device, batching over
frames, the CLIP-style image preprocessing and the linear head of ImageReward and the LAION
aesthetic predictor.

A judge scores frames: samples (B, 3, H, W) or videos (B, 3, T, H, W) in [-1, 1] become
(B * T, 3, H, W) frames, scored ``batch_size`` at a time, and each clip's T values are averaged:

    raw(x, c)      = 1/T sum_t s(x_t, c)           the judge's published score s
    __call__(x, c) = 1/T sum_t u(s(x_t, c))         u: the judge's fixed monotone map onto [0, 1]
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from prefopt.errors import ConfigError, first_line
from prefopt.rewards.callables import as_frames

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def local_folder(path, judge: str, checkpoint: str, required: tuple[str, ...]) -> Path:
    """``path`` as a folder holding ``required`` and model weights, or a one-line ConfigError on ``reward.path``."""
    needs = f"{judge} needs a local folder of {checkpoint}, see docs/judges.md"
    if path is None or str(path) in ("", "???"):
        raise ConfigError(f"reward.path: not set ({needs}: reward.path=/models/...)")
    folder = Path(str(path)).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"reward.path: {folder} does not exist or is not a folder ({needs})")
    missing = [name for name in required if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append("model.safetensors (or pytorch_model.bin)")
    if missing:
        raise ConfigError(f"reward.path: {folder} is incomplete, no {', '.join(missing)} ({needs})")
    return folder


class Judge:
    """A learned judge as a reward. Subclasses set ``name``, ``checkpoint`` (the public weights),
    ``required`` (files besides the weights), and define ``load(folder)``, ``frame_scores(frames,
    prompts) -> raw (N,)`` and ``unit(raw) -> [0, 1]``."""

    name = "judge"
    checkpoint = ""
    required: tuple[str, ...] = ("config.json",)

    def __init__(self, path=None, batch_size: int = 32, device: str = "auto"):
        self.path = local_folder(path, self.name, self.checkpoint, self.required)
        if batch_size < 1:
            raise ConfigError(f"reward.batch_size: must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        try:
            self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
        except RuntimeError:
            raise ConfigError(f"reward.device: {device!r} is not a torch device (auto, cpu, cuda, cuda:1, ...)") from None
        try:
            self.load(self.path)
        except Exception as error:  # noqa: BLE001 - a corrupt or mismatched file of any kind, named in one line
            raise ConfigError(f"reward.path: {self.path}: {self.name} cannot load it "
                              f"({type(error).__name__}: {first_line(error)})") from None

    def load(self, folder: Path) -> None:
        raise NotImplementedError

    def frame_scores(self, frames: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def unit(self, raw: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _per_frame(self, samples: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Raw scores (B, T) of every frame, against its clip's prompt."""
        if len(prompts) != samples.shape[0]:
            raise ValueError(f"{self.name}: {samples.shape[0]} samples but {len(prompts)} prompts")
        frames, count = as_frames(samples)
        frame_prompts = [str(prompt) for prompt in prompts for _ in range(count)]
        raw = [self.frame_scores(frames[i:i + self.batch_size].to(self.device, torch.float32),
                                 frame_prompts[i:i + self.batch_size]).float().cpu()
               for i in range(0, frames.shape[0], self.batch_size)]
        return torch.cat(raw).view(-1, count)

    @torch.no_grad()
    def raw(self, samples: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """The judge's own score (B,), as its paper reports it; videos: the mean over frames."""
        return self._per_frame(samples, prompts).mean(dim=1)

    @torch.no_grad()
    def __call__(self, samples: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """The reward (B,) in [0, 1]: the unit map of every frame's raw score, averaged per clip."""
        return self.unit(self._per_frame(samples, prompts)).mean(dim=1)


def resize_crop_normalize(frames: torch.Tensor, shortest: int, crop: tuple[int, int],
                          mean, std) -> torch.Tensor:
    """CLIP's preprocessing of frames (N, 3, H, W) in [-1, 1]: the shortest side resized to
    ``shortest`` (bicubic, antialiased, clamped to [0, 1] as an 8-bit image is), the centre
    ``crop`` (height, width), then (x - mean) / std per channel."""
    images = (frames + 1) / 2
    height, width = images.shape[-2:]
    size = (shortest, int(shortest * width / height)) if height <= width else (int(shortest * height / width), shortest)
    if size != (height, width):
        images = F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    top, left = (size[0] - crop[0]) // 2, (size[1] - crop[1]) // 2
    images = images[..., top:top + crop[0], left:left + crop[1]]
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean) / std


def processor_pixels(processor, frames: torch.Tensor) -> torch.Tensor:
    """:func:`resize_crop_normalize` with the settings of a folder's CLIP image processor."""
    crop = (processor.crop_size["height"], processor.crop_size["width"]) if processor.do_center_crop else None
    shortest = processor.size["shortest_edge"]
    return resize_crop_normalize(frames, shortest, crop or (shortest, shortest), processor.image_mean,
                                 processor.image_std)


def linear_head(state: dict[str, torch.Tensor]) -> torch.nn.Sequential:
    """The MLP of improved-aesthetic-predictor and ImageReward from its state dict
    (``layers.<i>.weight``/``.bias``): Linear layers with no activation between them,
    768 -> 1024 -> 128 -> 64 -> 16 -> 1 in the released weights (their dropouts act only in training)."""
    indices = sorted({int(key.split(".")[1]) for key in state if key.startswith("layers.")})
    if not indices:
        raise KeyError("no layers.<i>.weight in the head's state dict")
    layers = []
    for index in indices:
        weight = state[f"layers.{index}.weight"]
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
        layer.load_state_dict({"weight": weight, "bias": state[f"layers.{index}.bias"]})
        layers.append(layer)
    return torch.nn.Sequential(*layers).eval()


def embedding(output) -> torch.Tensor:
    """A ``get_*_features`` result as a tensor (transformers 5 returns an output whose pooler_output it is)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
