"""How a family's denoiser is called, when it is not prefopt's one call.

The likelihood core calls every denoiser the same way, on latents in one layout:

    denoiser(x_t, timestep=t, return_dict=False, **cond) -> (prediction,)     x_t (B, C, [T,] H, W)

SD 1.5, SDXL, AnimateDiff, Wan and SD3 read exactly that. The others get a forward pre-hook that
turns it into their own call and a forward hook that turns the prediction back, both written with
their pipeline's own functions, so the training call is the sampler's call:

    flux       2x2-packed tokens (B, HW/4, 4C), image and text position ids, timestep / 1000, and the
               distilled model's guidance embedding (``model.guidance``, FLUX.1-dev: 3.5)
    cogvideox  frames first (B, T, C, H, W), 3D rotary embeddings when the model has them, and for
               image-to-video the reference image's latents (cond ``image_latents``) padded with
               zero frames and concatenated on channels, plus the ``ofs`` embedding of CogVideoX 1.5
    wan_i2v    the pipeline's frame mask and the reference latents (cond ``image_latents``: the image
               then black frames, as the pipeline encodes them) concatenated on channels; the CLIP
               image embedding is a plain cond entry

Hooks, not a wrapper module: the denoiser stays the pipeline's own class, so peft LoRA, its
adapter switch (the reference), gradient checkpointing and the pipeline's LoRA export see it as is.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from prefopt.errors import ConfigError


def _split(args: tuple, kwargs: dict) -> tuple[torch.Tensor, dict]:
    """(x_t, the other kwargs) of a call made as ``denoiser(x_t, ...)`` or ``denoiser(hidden_states=x_t, ...)``."""
    kwargs = dict(kwargs)
    x = args[0] if args else kwargs.pop("hidden_states")
    return x, kwargs


def _replace_output(output, sample: torch.Tensor):
    if isinstance(output, tuple):
        return (sample, *output[1:])
    output.sample = sample
    return output


# ---- FLUX.1 --------------------------------------------------------------------------------------

def flux_hooks(guidance: float | None):
    from diffusers import FluxPipeline

    latent = {}  # the (h, w) of the call in flight, for its prediction's unpacking (no device sync)

    def before(module, args, kwargs):
        x, kwargs = _split(args, kwargs)
        b, c, h, w = x.shape
        latent["hw"] = (h, w)
        kwargs["hidden_states"] = FluxPipeline._pack_latents(x, b, c, h, w)
        kwargs["img_ids"] = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, x.device, x.dtype)
        text = kwargs["encoder_hidden_states"]
        kwargs["txt_ids"] = torch.zeros(text.shape[1], 3, device=x.device, dtype=x.dtype)  # as encode_prompt makes them
        kwargs["timestep"] = kwargs["timestep"].to(x.dtype) / 1000
        if module.config.guidance_embeds:
            if guidance is None:
                raise ConfigError("model.guidance: this FLUX transformer has a guidance embedding (a distilled "
                                  "model, FLUX.1-dev); set the guidance it trains at, e.g. model.guidance=3.5")
            kwargs["guidance"] = torch.full((b,), float(guidance), device=x.device, dtype=torch.float32)
        return (), kwargs

    def after(module, args, kwargs, output):
        h, w = latent["hw"]
        sample = output[0] if isinstance(output, tuple) else output.sample
        return _replace_output(output, FluxPipeline._unpack_latents(sample, h, w, 1))

    return before, after


# ---- CogVideoX -----------------------------------------------------------------------------------

def _rotary(module, height: int, width: int, frames: int, device):
    """The pipeline's own rotary embeddings (``_prepare_rotary_positional_embeddings``) at latent size."""
    from diffusers import CogVideoXPipeline

    pipe = SimpleNamespace(vae_scale_factor_spatial=1, transformer=module)
    return CogVideoXPipeline._prepare_rotary_positional_embeddings(pipe, height, width, frames, device)


def cogvideox_hooks(guidance: float | None = None):
    def before(module, args, kwargs):
        x, kwargs = _split(args, kwargs)
        frames_first = x.transpose(1, 2)  # (B, T, C, H, W)
        frames, height, width = frames_first.shape[1], frames_first.shape[3], frames_first.shape[4]
        p_t = module.config.patch_size_t
        if p_t is not None and frames % p_t:
            raise ConfigError(f"data.num_frames: CogVideoX 1.5 needs a latent frame count divisible by {p_t}, got "
                              f"{frames} latent frames (use 4k+1 frames with k+1 divisible by {p_t})")
        image = kwargs.pop("image_latents", None)  # (B, C, 1, H, W): the reference image, I2V only
        if image is not None:
            image = image.transpose(1, 2).to(x.dtype)
            padding = image.new_zeros(image.shape[0], frames - 1, *image.shape[2:])
            frames_first = torch.cat([frames_first, torch.cat([image, padding], dim=1)], dim=2)
        if module.config.use_rotary_positional_embeddings:
            kwargs["image_rotary_emb"] = _rotary(module, height, width, frames, x.device)
        if module.config.ofs_embed_dim is not None:
            kwargs["ofs"] = x.new_full((1,), 2.0)
        kwargs["hidden_states"] = frames_first
        return (), kwargs

    def after(module, args, kwargs, output):
        sample = output[0] if isinstance(output, tuple) else output.sample
        return _replace_output(output, sample.transpose(1, 2))

    return before, after


# ---- Wan image-to-video --------------------------------------------------------------------------

def wan_i2v_hooks(guidance: float | None = None):
    def before(module, args, kwargs):
        x, kwargs = _split(args, kwargs)
        image = kwargs.pop("image_latents").to(x.dtype)  # (B, C, T, H, W): reference latents, then black frames
        # the pipeline's frame mask: one channel per frame the VAE folds into a latent frame, 1 on the first
        # latent frame (the given image), 0 after
        mask = x.new_zeros(x.shape[0], module.config.in_channels - x.shape[1] - image.shape[1], *x.shape[2:])
        mask[:, :, 0] = 1
        kwargs["hidden_states"] = torch.cat([x, mask, image], dim=1)
        return (), kwargs

    return before, None


def latent_channels(config) -> int | None:
    """The channels of the latents a denoiser (its diffusers config) denoises: FLUX reads them as 2x2
    packed tokens (in_channels / 4), an I2V model reads them beside its condition (its out_channels)."""
    name = config.get("_class_name", "")
    if name == "FluxTransformer2DModel":
        return config["in_channels"] // 4
    if name in ("CogVideoXTransformer3DModel", "WanTransformer3DModel") and config.get("out_channels"):
        return config["out_channels"]
    return config.get("in_channels")


HOOKS = {"flux": flux_hooks, "cogvideox": cogvideox_hooks, "wan_i2v": wan_i2v_hooks}


def install(family_name: str, denoiser: torch.nn.Module, guidance: float | None = None) -> torch.nn.Module:
    """Give ``denoiser`` prefopt's call if its family has another one (see the module docstring)."""
    make = HOOKS.get(family_name)
    if make is not None:
        before, after = make(guidance)
        denoiser.register_forward_pre_hook(before, with_kwargs=True)
        if after is not None:
            denoiser.register_forward_hook(after, with_kwargs=True)
    return denoiser
