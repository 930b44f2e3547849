"""peft LoRA on diffusers models (``add_adapter``), and saving the adapter in diffusers format."""

from __future__ import annotations

from pathlib import Path

import torch

from prefopt.errors import ConfigError

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"


def add_lora(model: torch.nn.Module, rank: int, alpha: float, target_modules: list[str]) -> torch.nn.Module:
    """Freeze the base and add a LoRA adapter; only the adapter is trainable afterwards.

    Models with diffusers' PeftAdapterMixin get ``add_adapter`` (so pipelines' LoRA loading sees
    it); others (e.g. UNet2DModel) get the same peft injection directly.
    """
    from peft import LoraConfig, inject_adapter_in_model

    model.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(target_modules))
    try:
        if hasattr(model, "add_adapter"):
            model.add_adapter(config)
        else:
            inject_adapter_in_model(config, model)
            model.peft_config = {"default": config}
    except ValueError as error:
        raise ConfigError(f"lora.target_modules {list(target_modules)}: {str(error).splitlines()[0]}") from None
    return model


def half_precision_base(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A LoRA model's frozen base in ``dtype`` (bf16/fp16), its trainable adapter kept in fp32
    (diffusers' ``cast_training_params``), as diffusers' LoRA training scripts do."""
    if dtype != torch.float32:
        from diffusers.training_utils import cast_training_params

        model.to(dtype)
        cast_training_params(model, dtype=torch.float32)
    return model


def lora_state_dict(model: torch.nn.Module, diffusers_keys: bool = True) -> dict[str, torch.Tensor]:
    """The adapter's weights in diffusers' key format (``lora.down``/``lora.up``, what UNet pipelines
    save), or peft's (``lora_A``/``lora_B``, what diffusers' transformer LoRA scripts save)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    weights = get_peft_model_state_dict(model)
    return convert_state_dict_to_diffusers(weights) if diffusers_keys else weights


def save_lora(model: torch.nn.Module, directory: Path) -> Path:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LORA_WEIGHTS
    save_file({k: v.detach().cpu().contiguous() for k, v in lora_state_dict(model).items()}, str(path))
    return path


def export_lora(model: torch.nn.Module, fam, base_path: Path, directory: Path) -> Path:
    """Save the adapter with the pipeline's own ``save_lora_weights`` (keys prefixed ``unet.`` or
    ``transformer.``, each in the key format its family's diffusers training script saves, the LoRA config, alpha included, in the file's metadata), so that
    ``Pipeline.from_pretrained(base_path).load_lora_weights(directory)`` applies it."""
    from prefopt.models.families import pipeline_class

    pipeline_class(base_path).save_lora_weights(
        directory, **{f"{fam.denoiser}_lora_layers": lora_state_dict(model, diffusers_keys=fam.denoiser == "unet"),
                      f"{fam.denoiser}_lora_adapter_metadata": model.peft_config["default"].to_dict()})
    return Path(directory) / LORA_WEIGHTS


def load_lora(model: torch.nn.Module, directory: Path) -> torch.nn.Module:
    """Load an adapter saved by :func:`save_lora` into ``model``, which carries the same adapter config."""
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(directory) / LORA_WEIGHTS
    if not path.is_file():
        raise ConfigError(f"{path}: no LoRA weights")
    result = set_peft_model_state_dict(model, convert_unet_state_dict_to_peft(load_file(str(path))))
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
    if unexpected:
        raise ConfigError(f"{path}: weights {unexpected[0]!r} do not fit the model's adapter")
    return model
