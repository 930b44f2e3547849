"""Build (denoiser, scheduler) from ``cfg.model``.

A model is always loaded from a diffusers folder with ``from_pretrained``: ``model.path`` for real
models, or, when ``model.path`` is null, a folder that :mod:`prefopt.models.tiny` writes once from
``model.config`` (random init, seeded) into ``model.cache_dir``. The folder holds the denoiser in
``model.subfolder`` and the scheduler in ``scheduler/``.

``model.family`` (sd15, sdxl, animatediff, wan; prefopt/models/families.py) marks ``model.path`` as a
diffusers pipeline folder: the denoiser is its ``unet``/``transformer``, its VAE and text encoders
encode the data once (prefopt/data/latents.py), and a LoRA is exported in the pipeline's format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from prefopt.errors import ConfigError
from prefopt.models.families import Family, family, pipeline_class
from prefopt.models.lora import add_lora, export_lora, load_lora, save_lora
from prefopt.models.tiny import materialize


@dataclass
class ModelBundle:
    denoiser: torch.nn.Module
    scheduler: object  # a diffusers training scheduler
    path: Path
    family: Family | None = None
    random_init: bool = False  # built from ``model.config`` (model.path null), not a pretrained folder


def diffusers_class(name: str, key: str):
    """A diffusers class by name, or one of prefopt's own diffusers models (prefopt/models/video.py)."""
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None and key == "model.denoiser_class":
        from prefopt.models.video import CLASSES

        cls = CLASSES.get(name)
    if cls is None:
        raise ConfigError(f"{key}: diffusers has no class {name!r}")
    return cls


def build_scheduler(cfg, path: Path):
    scheduler_cls = diffusers_class(cfg.scheduler_class, "model.scheduler_class")
    overrides = {}
    if cfg.prediction_type and not hasattr(scheduler_cls, "scale_noise"):
        overrides["prediction_type"] = cfg.prediction_type
    overrides.update(cfg.scheduler_kwargs)
    if (path / "scheduler").is_dir():
        return scheduler_cls.from_pretrained(path, subfolder="scheduler", **overrides)
    return scheduler_cls(**overrides)


def build_model(cfg) -> ModelBundle:
    """``cfg``: a :class:`prefopt.config.ModelConfig`."""
    fam = family(cfg.family)
    if fam is not None and not cfg.path:
        raise ConfigError(f"model.path: model.family={fam.name} needs a local diffusers pipeline folder")
    path = Path(cfg.path).expanduser() if cfg.path else materialize(cfg)
    if not path.is_dir():
        raise ConfigError(f"model.path: no such diffusers folder: {path}")
    if fam is not None:
        pipeline_class(path)  # a pipeline folder, named in one line if not
    denoiser_cls = diffusers_class(cfg.denoiser_class, "model.denoiser_class")
    subfolder = cfg.subfolder or (fam.denoiser if fam else None)
    if subfolder and not (path / subfolder).is_dir():
        raise ConfigError(f"model.subfolder: {path} has no {subfolder}/ folder")
    denoiser = denoiser_cls.from_pretrained(path, subfolder=subfolder)
    if cfg.gradient_checkpointing:
        denoiser.enable_gradient_checkpointing()
    return ModelBundle(denoiser=denoiser, scheduler=build_scheduler(cfg, path), path=path, family=fam,
                       random_init=not cfg.path)


def load_trained(bundle: ModelBundle, lora_cfg, final_dir: Path) -> torch.nn.Module:
    """The denoiser a run saved in ``final_dir``: the base with its LoRA adapter, or the full model."""
    final_dir = Path(final_dir)
    if not final_dir.is_dir():
        raise ConfigError(f"{final_dir}: no final weights (did the run finish?)")
    if lora_cfg.enabled and bundle.family is not None:  # the pipeline-format export, its config in its metadata
        bundle.denoiser.load_lora_adapter(str(final_dir), prefix=bundle.family.denoiser, adapter_name="default")
        return bundle.denoiser
    if lora_cfg.enabled:
        add_lora(bundle.denoiser, lora_cfg.rank, lora_cfg.alpha, lora_cfg.target_modules)
        return load_lora(bundle.denoiser, final_dir)
    return type(bundle.denoiser).from_pretrained(final_dir)


def save_weights(model, lora: bool, directory: Path, bundle: ModelBundle | None = None) -> None:
    """LoRA runs save the adapter (diffusers format; for a model family, the pipeline's LoRA format
    that ``pipe.load_lora_weights`` reads), full runs the whole model (safetensors)."""
    if lora and bundle is not None and bundle.family is not None:
        export_lora(model, bundle.family, bundle.path, directory)
    elif lora:
        save_lora(model, directory)
    else:
        model.save_pretrained(directory, safe_serialization=True)
