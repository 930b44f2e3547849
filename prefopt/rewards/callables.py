"""Rewards for ``python -m prefopt.score``: callables chosen with ``reward=<conf/reward option>`` or
``reward._target_=my.module.my_reward`` (any importable function or class).

The signature every reward has:

    reward(samples, prompts, **kwargs) -> Tensor (B,) | dict[str, Tensor (B,)]

``samples``: (B, 3, H, W) images or (B, 3, T, H, W) videos, float32 in [-1, 1]; ``prompts``: B
strings; every value in [0, 1]. Keys of the config other than ``_target_`` are the kwargs. A dict
is a multi-dimensional reward: ``prefopt.score`` keeps every dimension in the row's ``scores`` and
ranks by its ``score`` entry, which :class:`Weighted` makes (GAPO's gap needs one score in [0, 1]).
"""

from __future__ import annotations

import hashlib
import inspect
import json

import torch

from prefopt.errors import ConfigError


def as_frames(samples: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Videos as their frames (B * T, 3, H, W), and T (1 for images)."""
    if samples.dim() == 5:
        return samples.transpose(1, 2).flatten(0, 1), samples.shape[2]
    return samples, 1


def synth_hands(samples: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """The SynthHands graded reward (prefopt/tasks/synthhands/reward.py); videos: the mean over frames."""
    from prefopt.tasks.synthhands.reward import score

    frames, count = as_frames(samples)
    return score(frames).reward.view(-1, count).mean(dim=1)


def mediapipe_hands(samples: torch.Tensor, prompts: list[str], expected_hands: int = 1) -> torch.Tensor:
    """mediapipe's hand confidence times the share of landmarks found (prefopt/rewards/mediapipe_hands.py)."""
    from prefopt.rewards.mediapipe_hands import hand_quality

    frames, count = as_frames(samples)
    return hand_quality(frames, expected_hands=expected_hands).score.view(-1, count).mean(dim=1)


def temporal_consistency(samples: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """1 - the mean absolute change between consecutive frames, over the [-1, 1] range (images: 1)."""
    if samples.dim() != 5 or samples.shape[2] < 2:
        return torch.ones(samples.shape[0])
    change = (samples[:, :, 1:] - samples[:, :, :-1]).abs().mean(dim=(1, 2, 3, 4))
    return (1 - change / 2).clamp(0, 1)


class Weighted:
    """A multi-dimensional reward: each dimension a reward config, ``score = sum w_d s_d / sum w_d``.

        reward: {_target_: prefopt.rewards.callables.Weighted, _recursive_: false,
                 dims: {hands: {_target_: ...mediapipe_hands}, motion: {_target_: ...temporal_consistency}},
                 weights: {hands: 0.7, motion: 0.3}}
    """

    def __init__(self, dims: dict, weights: dict | None = None):
        if not dims:
            raise ConfigError("reward.dims: Weighted needs at least one dimension")
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(dims))
        if unknown:
            raise ConfigError(f"reward.weights.{unknown[0]}: no such dimension (dims: {sorted(dims)})")
        self.dims = {name: load(config, f"reward.dims.{name}") for name, config in dims.items()}
        self.weights = {name: float(weights.get(name, 1.0)) for name in dims}
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ConfigError(f"reward.weights: must be >= 0 with a positive sum, got {self.weights}")

    def __call__(self, samples: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        values = {name: check(reward(samples, prompts), len(prompts), f"reward.dims.{name}")
                  for name, reward in self.dims.items()}
        total = sum(self.weights.values())
        values["score"] = sum(self.weights[name] * value for name, value in values.items()) / total
        return values


def load(config, key: str = "reward"):
    """The callable a reward config names: a class is instantiated, a function bound to its kwargs."""
    from functools import partial

    from hydra.utils import get_object
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(config, resolve=True) if OmegaConf.is_config(config) else dict(config)
    target = plain.pop("_target_", None)
    if not isinstance(target, str):
        raise ConfigError(f"{key}._target_: a reward needs the import path of a function or class")
    try:
        obj = get_object(target)
    except Exception as error:  # noqa: BLE001 - an import error of any kind, named in one line
        raise ConfigError(f"{key}._target_: cannot import {target!r} ({type(error).__name__})") from None
    kwargs = {k: v for k, v in plain.items() if not k.startswith("_")}
    return obj(**kwargs) if inspect.isclass(obj) else partial(obj, **kwargs)


def name(config) -> str:
    """``<target>#<hash of its settings>``: what a row's ``reward`` field records."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(config, resolve=True) if OmegaConf.is_config(config) else dict(config)
    digest = hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:8]
    return f"{plain.get('_target_')}#{digest}"


def check(values, count: int, key: str) -> torch.Tensor:
    """A reward's output as (B,) float in [0, 1], or a one-line ConfigError naming the reward."""
    if not isinstance(values, torch.Tensor):
        values = torch.as_tensor(values, dtype=torch.float32)
    values = values.detach().float().cpu().reshape(-1) if values.numel() == count else values
    if values.shape != (count,):
        raise ConfigError(f"{key}: returned shape {tuple(values.shape)} for {count} samples, expected ({count},)")
    if not torch.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        bad = values[~(torch.isfinite(values) & (values >= 0) & (values <= 1))][0].item()
        raise ConfigError(f"{key}: returned {bad}, rewards must be finite and in [0, 1]")
    return values
