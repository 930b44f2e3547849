"""Build (denoiser, scheduler) from ``cfg.model``.

A model is always loaded from a diffusers folder with ``from_pretrained``: ``model.path`` for real
models, or, when ``model.path`` is null, a folder that :mod:`prefopt.models.tiny` writes once from
``model.config`` (random init, seeded) into ``model.cache_dir``. The folder holds the denoiser in
``model.subfolder`` and the scheduler in ``scheduler/``.

``model.family`` (prefopt/models/families.py) marks ``model.path`` as a
diffusers pipeline folder: the denoiser is its ``unet``/``transformer``, its VAE and text encoders
encode the data once (prefopt/data/latents.py), and a LoRA is exported in the pipeline's format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from prefopt.errors import ConfigError, first_line
from prefopt.io import atomic_directory
from prefopt.models.calls import install
from prefopt.models.families import FAMILIES, Family, check_folder, family
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


def load_pretrained(load, path: Path, key: str = "model.path"):
    """``load()`` (a ``from_pretrained``), its failure on the folder's files one line naming ``key``
    and the folder: a truncated or damaged weights file, a config that does not parse or that the
    model's class rejects."""
    from safetensors import SafetensorError

    try:
        return load()
    except ConfigError:
        raise
    except (OSError, ValueError, TypeError, SafetensorError) as error:
        raise ConfigError(f"{key}: {path} does not load ({first_line(error)}); its files are damaged or incomplete: "
                          "copy or export the model folder again") from None


def build_model(cfg) -> ModelBundle:
    """``cfg``: a :class:`prefopt.config.ModelConfig`."""
    fam = family(cfg.family)
    if fam is not None and not cfg.path:
        raise ConfigError(f"model.path: model.family={fam.name} needs a local diffusers pipeline folder")
    path = Path(cfg.path).expanduser() if cfg.path else materialize(cfg)
    if not path.is_dir():
        raise ConfigError(f"model.path: no such diffusers folder: {path}")
    if fam is not None:
        check_folder(fam, path)  # a pipeline folder of this family, named in one line if not
    denoiser_cls = diffusers_class(cfg.denoiser_class, "model.denoiser_class")
    subfolder = cfg.subfolder or (fam.denoiser if fam else None)
    if subfolder and not (path / subfolder).is_dir():
        raise ConfigError(f"model.subfolder: {path} has no {subfolder}/ folder")
    denoiser = load_pretrained(lambda: denoiser_cls.from_pretrained(path, subfolder=subfolder),
                               path / subfolder if subfolder else path)
    if cfg.gradient_checkpointing:
        denoiser.enable_gradient_checkpointing()
    if fam is not None:
        install(fam.name, denoiser, cfg.guidance)
    scheduler = load_pretrained(lambda: build_scheduler(cfg, path), path / "scheduler")
    return ModelBundle(denoiser=denoiser, scheduler=scheduler, path=path, family=fam, random_init=not cfg.path)


def load_trained(bundle: ModelBundle, lora_cfg, final_dir: Path) -> torch.nn.Module:
    """The denoiser a run saved in ``final_dir``: the base with its LoRA adapter, or the full model."""
    final_dir = Path(final_dir)
    if not final_dir.is_dir():
        raise ConfigError(f"{final_dir}: no final weights (did the run finish?)")
    if lora_cfg.enabled and bundle.family is not None:  # the pipeline-format export, its config in its metadata
        load_pretrained(lambda: bundle.denoiser.load_lora_adapter(str(final_dir), prefix=bundle.family.denoiser,
                                                                  adapter_name="default"), final_dir, "run")
        return bundle.denoiser
    if lora_cfg.enabled:
        add_lora(bundle.denoiser, lora_cfg.rank, lora_cfg.alpha, lora_cfg.target_modules)
        return load_pretrained(lambda: load_lora(bundle.denoiser, final_dir), final_dir, "run")
    return load_pretrained(lambda: type(bundle.denoiser).from_pretrained(final_dir), final_dir, "run")


def save_weights(model, lora: bool, directory: Path, bundle: ModelBundle | None = None) -> None:
    """LoRA runs save the adapter (diffusers format; for a model family, the pipeline's LoRA format
    that ``pipe.load_lora_weights`` reads), full runs the whole model (safetensors); the folder is
    written whole or not at all (prefopt/io.py)."""

    def write(folder: Path) -> None:
        if lora and bundle is not None and bundle.family is not None:
            export_lora(model, bundle.family, bundle.path, folder)
        elif lora:
            save_lora(model, folder)
        else:
            model.save_pretrained(folder, safe_serialization=True)

    atomic_directory(Path(directory), write)


# ---- what data fits a denoiser, read from configs before anything is built or read ----------------

VIDEO_DENOISERS = ("MotionVideoModel", "UNetMotionModel", "UNet3DConditionModel", "WanTransformer3DModel",
                   "CogVideoXTransformer3DModel")


def _json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # loading the folder reports it
    return value if isinstance(value, dict) else None


def denoiser_config(cfg) -> tuple[str, dict] | None:
    """(class name, config) of the denoiser ``cfg`` (a ModelConfig) stands for: ``model.config`` of a
    random-init model, else the folder's ``config.json``; None when the folder cannot tell."""
    fam = FAMILIES.get(cfg.family)
    if not cfg.path:
        return None if fam else (cfg.denoiser_class, dict(cfg.config))
    config = _json(Path(cfg.path).expanduser() / (cfg.subfolder or (fam.denoiser if fam else "")) / "config.json")
    return (str(config.get("_class_name", cfg.denoiser_class)), config) if config else None


def _count(value) -> int | None:
    return len(value) if isinstance(value, list | tuple) and value else None


def spatial_multiple(name: str, config: dict) -> int:
    """What the denoiser's input height and width must be a multiple of: a UNet2DModel halves them
    at every block but the last and cannot upsample an odd size back; a transformer cuts them into
    patches. Conditional UNets interpolate to any size (1)."""
    if name == "MotionVideoModel":
        backbone = config.get("backbone_config")
        return spatial_multiple(str(config.get("backbone", "WanTransformer3DModel")),
                                backbone if isinstance(backbone, dict) else {})
    if name == "UNet2DModel":
        return 2 ** ((_count(config.get("block_out_channels")) or 4) - 1)  # diffusers' default: 4 blocks
    if name == "FluxTransformer2DModel":
        return 2  # latents are packed into 2x2 tokens
    patch = config.get("patch_size")
    patch = patch[-1] if isinstance(patch, list | tuple) and patch else patch
    return patch if isinstance(patch, int) and not isinstance(patch, bool) and patch > 0 else 1


def vae_scale(path: Path) -> int:
    """A pipeline folder's VAE's spatial down-scaling (what pipelines call ``vae_scale_factor``)."""
    config = _json(Path(path).expanduser() / "vae" / "config.json") or {}
    scale = config.get("scale_factor_spatial")  # Wan's
    if isinstance(scale, int) and scale > 0:
        return scale
    levels = _count(config.get("block_out_channels")) or _count(config.get("dim_mult"))
    return 2 ** (levels - 1) if levels else 8


def check_fits(model, data) -> None:
    """One line naming the data key when data of ``data`` (a DataConfig) cannot go through the
    denoiser of ``model`` (a ModelConfig): an image size that is not a multiple of what the model
    divides it by (the VAE's scale times the denoiser's), frames for an image denoiser."""
    found = denoiser_config(model)
    if found is None:
        return
    name, config = found
    fam = FAMILIES.get(model.family)
    vae = vae_scale(model.path) if fam is not None else 1
    multiple, size = vae * spatial_multiple(name, config), data.image_size
    if size % multiple:
        below = size - size % multiple
        nearest = f"{below} or {below + multiple}" if below else str(multiple)
        how = f"its VAE scales by {vae} and " if vae > 1 else ""
        raise ConfigError(f"data.image_size={size} does not fit model={model.name} ({name}): {how}it takes sizes "
                          f"that are multiples of {multiple}; use {nearest}")
    if config.get("use_learned_positional_embeddings"):  # CogVideoX-5b-I2V: one size only
        height, width = config.get("sample_height", 0) * vae, config.get("sample_width", 0) * vae
        if (size, size) != (height, width):
            raise ConfigError(f"data.image_size={size} does not fit model={model.name} ({name}): its learned positional "
                              f"embeddings take {height}x{width} frames only"
                              + ("" if height == width else " (prefopt's data is square: this model cannot be trained here)"))
    video = fam.video if fam is not None else name in VIDEO_DENOISERS
    if data.num_frames is not None and not video:
        raise ConfigError(f"data.num_frames={data.num_frames}: model={model.name} ({name}) is an image model; "
                          "set data.num_frames=null or choose a video model")
    if data.num_frames is None and video and fam is None:  # a family's encoder reads the clips' frames itself
        raise ConfigError(f"data.num_frames=null: model={model.name} ({name}) is a video model and data={data.name} "
                          "gives images; choose video data (data=synth_anim) or set data.num_frames to the clips' "
                          "frame count")


def input_channels(model) -> int | None:
    """The channels the denoiser of ``model`` (a ModelConfig) reads, from its config; None if unknown."""
    found = denoiser_config(model)
    if found is None:
        return None
    name, config = found
    shares = 1
    if name == "MotionVideoModel":
        shares = 2 if config.get("image_to_video") else 1  # the clip and its reference on channels
        config = config.get("backbone_config") if isinstance(config.get("backbone_config"), dict) else {}
    channels = config.get("in_channels")
    return channels // shares if isinstance(channels, int) else None
