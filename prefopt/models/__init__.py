"""Model builders: a denoiser and its training scheduler, from a local diffusers folder or from a
tiny random-init config materialized on disk (saved and re-loaded through ``from_pretrained``)."""

from prefopt.models.builders import ModelBundle, build_model, load_trained, save_weights
from prefopt.models.lora import add_lora, export_lora, half_precision_base, load_lora, lora_state_dict, save_lora

__all__ = ["ModelBundle", "add_lora", "export_lora", "build_model", "half_precision_base", "load_lora", "load_trained", "lora_state_dict", "save_lora",
           "save_weights"]
