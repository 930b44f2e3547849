"""Build (denoiser, scheduler) from ``cfg.model``.

A model is always loaded from a diffusers folder with ``from_pretrained``: ``model.path`` for real
models, or, when ``model.path`` is null, a folder that :mod:`prefopt.models.tiny` writes once from
``model.config`` (random init, seeded) into ``model.cache_dir``. The folder holds the denoiser in
``model.subfolder`` and the scheduler in ``scheduler/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from prefopt.errors import ConfigError
from prefopt.models.tiny import materialize


@dataclass
class ModelBundle:
    denoiser: torch.nn.Module
    scheduler: object  # a diffusers training scheduler
    path: Path


def _diffusers_class(name: str, key: str):
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ConfigError(f"{key}: diffusers has no class {name!r}")
    return cls


def build_scheduler(cfg, path: Path):
    scheduler_cls = _diffusers_class(cfg.scheduler_class, "model.scheduler_class")
    overrides = {}
    if cfg.prediction_type and not hasattr(scheduler_cls, "scale_noise"):
        overrides["prediction_type"] = cfg.prediction_type
    if (path / "scheduler").is_dir():
        return scheduler_cls.from_pretrained(path, subfolder="scheduler", **overrides)
    return scheduler_cls(**overrides)


def build_model(cfg) -> ModelBundle:
    """``cfg``: a :class:`prefopt.config.ModelConfig`."""
    path = Path(cfg.path) if cfg.path else materialize(cfg)
    if not path.is_dir():
        raise FileNotFoundError(f"model.path: no such diffusers folder: {path}")
    denoiser_cls = _diffusers_class(cfg.denoiser_class, "model.denoiser_class")
    denoiser = denoiser_cls.from_pretrained(path, subfolder=cfg.subfolder or None)
    return ModelBundle(denoiser=denoiser, scheduler=build_scheduler(cfg, path), path=path)


def load_trained(bundle: ModelBundle, lora_cfg, final_dir: Path) -> torch.nn.Module:
    """The denoiser a run saved in ``final_dir``: the base with its LoRA adapter, or the full model."""
    from prefopt.models.lora import add_lora, load_lora

    final_dir = Path(final_dir)
    if not final_dir.is_dir():
        raise ConfigError(f"{final_dir}: no final weights (did the run finish?)")
    if lora_cfg.enabled:
        add_lora(bundle.denoiser, lora_cfg.rank, lora_cfg.alpha, lora_cfg.target_modules)
        return load_lora(bundle.denoiser, final_dir)
    return type(bundle.denoiser).from_pretrained(final_dir)
