"""Model families: what differs between SD 1.5, SDXL, SD3, FLUX.1, AnimateDiff, Wan (text- and
image-to-video) and CogVideoX (text- and image-to-video), and nothing else.

A family names its denoiser component (``unet`` or ``transformer``: the pipeline folder's
subfolder and the prefix of its LoRA keys), whether it is a video model, and how its frozen parts
turn data into what the denoiser reads, once, before training (prefopt/data/encoders.py, cache.py):

    latents(pipe, pixels)    pixels in [-1, 1], (B, 3, H, W) or (B, 3, T, H, W) -> scaled VAE latents
    prompts(pipe, texts, hw) -> the denoiser's condition kwargs, per sample
    frame_cond(cond, T)      -> a batch's condition as the denoiser's forward reads it
    image_cond(pipe, images, T) -> image-to-video: the per-row condition made from the reference
                                image (B, 3, H, W): the row's ``image`` column, else its winner's first
                                frame (as diffusers' CogVideoX I2V training script takes it); winner
                                and loser share it

How a denoiser whose own call differs (FLUX's packed tokens, CogVideoX's frames-first layout, the
I2V channel concatenation) is called: prefopt/models/calls.py.

Both go through the diffusers pipeline's own ``encode_prompt`` and VAE with the pipeline's own
scaling, so a cached latent is what the pipeline's sampler would decode. The VAE latent is the
posterior's mode (deterministic, so a cache is exact). ``model.family: null`` is a bare denoiser
on pixels (the SynthHands models).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from prefopt.errors import ConfigError


def _on(vae, pixels: torch.Tensor) -> torch.Tensor:
    """``pixels`` on the VAE's device and dtype, read from its first weight (diffusers' ``device`` and
    ``dtype`` properties walk every module: a tenth of the encoding time of a small VAE)."""
    weight = next(vae.parameters())
    return pixels.to(weight.device, weight.dtype)


def _vae_latents(pipe, pixels: torch.Tensor) -> torch.Tensor:
    """An image VAE (SD, SDXL, AnimateDiff): videos frame by frame; ``(z - shift) * scale``."""
    vae = pipe.vae
    video = pixels.dim() == 5
    if video:
        batch, frames = pixels.shape[0], pixels.shape[2]
        pixels = pixels.transpose(1, 2).flatten(0, 1)
    latents = vae.encode(_on(vae, pixels)).latent_dist.mode()
    latents = (latents - (getattr(vae.config, "shift_factor", None) or 0.0)) * vae.config.scaling_factor
    return latents.unflatten(0, (batch, frames)).transpose(1, 2) if video else latents


def _wan_latents(pipe, pixels: torch.Tensor) -> torch.Tensor:
    """Wan's causal video VAE, normalized per channel by the VAE's ``latents_mean``/``latents_std``."""
    vae = pipe.vae
    latents = vae.encode(_on(vae, pixels)).latent_dist.mode()
    mean = torch.tensor(vae.config.latents_mean, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1, 1)
    return (latents - mean) / std


def _cogvideox_latents(pipe, pixels: torch.Tensor) -> torch.Tensor:
    """CogVideoX's causal video VAE times its ``scaling_factor`` (as its training scripts encode)."""
    vae = pipe.vae
    return vae.encode(_on(vae, pixels)).latent_dist.mode() * vae.config.scaling_factor


def _cogvideox_image(pipe, images: torch.Tensor, frames: int) -> dict:
    """The reference image's latents (B, C, 1, h, w), scaled as the I2V pipeline scales them
    (CogVideoX 1.5 folders set ``invert_scale_latents``: divided by the factor)."""
    vae = pipe.vae
    latents = vae.encode(_on(vae, images[:, :, None])).latent_dist.mode()
    scale = vae.config.scaling_factor
    return {"image_latents": latents / scale if vae.config.get("invert_scale_latents") else latents * scale}


def _wan_image(pipe, images: torch.Tensor, frames: int) -> dict:
    """Wan I2V: the latents of the reference image followed by black frames, from the pipeline's own
    ``prepare_latents`` (its frame mask, the same for every row, is made at the call), and
    ``encode_image``'s CLIP embedding."""
    first = _on(pipe.vae, images)
    height, width = first.shape[-2:]
    condition = [pipe.prepare_latents(image[None], 1, pipe.vae.config.z_dim, height, width, frames, first.dtype,
                                      first.device)[1] for image in first]  # one image per call, as the pipeline calls it
    cond = {"image_latents": torch.cat(condition)[:, pipe.vae_scale_factor_temporal:]}  # without the mask channels
    if pipe.image_encoder is not None:  # Wan 2.1 I2V; Wan 2.2's has none
        arrays = [((frame.permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy() for frame in first]
        cond["encoder_hidden_states_image"] = pipe.encode_image(arrays, first.device)
    return cond


def _clip_prompts(pipe, texts: list[str], size: tuple[int, int]) -> dict:
    embeds = pipe.encode_prompt(texts, pipe.device, 1, False)[0]
    return {"encoder_hidden_states": embeds}


def _sdxl_prompts(pipe, texts: list[str], size: tuple[int, int]) -> dict:
    """SDXL's two text encoders, pooled embedding and size/crop micro-conditioning (uncropped, at ``size``)."""
    embeds, _, pooled, _ = pipe.encode_prompt(texts, device=pipe.device, num_images_per_prompt=1,
                                              do_classifier_free_guidance=False)
    time_ids = torch.tensor([[*size, 0, 0, *size]], dtype=embeds.dtype, device=embeds.device)  # as its pipeline builds them
    return {"encoder_hidden_states": embeds,
            "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids.repeat(len(texts), 1)}}


def _sd3_prompts(pipe, texts: list[str], size: tuple[int, int]) -> dict:
    """SD3's two CLIP encoders and T5: their joint sequence and the pooled CLIP embeddings."""
    embeds, _, pooled, _ = pipe.encode_prompt(texts, texts, texts, device=pipe.device, num_images_per_prompt=1,
                                              do_classifier_free_guidance=False, max_sequence_length=256)
    return {"encoder_hidden_states": embeds, "pooled_projections": pooled}


def _flux_prompts(pipe, texts: list[str], size: tuple[int, int]) -> dict:
    """FLUX's T5 sequence and pooled CLIP embedding (its text ids are zeros, made at the call)."""
    embeds, pooled, _ = pipe.encode_prompt(texts, texts, device=pipe.device, num_images_per_prompt=1,
                                           max_sequence_length=512)
    return {"encoder_hidden_states": embeds, "pooled_projections": pooled}


def _cogvideox_prompts(pipe, texts: list[str], size: tuple[int, int]) -> dict:
    embeds = pipe.encode_prompt(texts, do_classifier_free_guidance=False, max_sequence_length=226,
                                device=pipe.device)[0]
    return {"encoder_hidden_states": embeds}


def _wan_prompts(pipe, texts: list[str], size: tuple[int, int]) -> dict:
    embeds = pipe.encode_prompt(texts, do_classifier_free_guidance=False, max_sequence_length=512,
                                device=pipe.device)[0]
    return {"encoder_hidden_states": embeds}


def _per_frame(cond: dict, frames: int) -> dict:
    """AnimateDiff's UNet reads one text embedding per frame, (B * T, L, D), sample-major as its pipeline makes it."""
    return {k: v.repeat_interleave(frames, dim=0) for k, v in cond.items()}


def _as_is(cond: dict, frames: int) -> dict:
    return cond


def _any_frames(frames: int) -> str | None:
    return None


def _causal(name: str) -> Callable[[int], str | None]:
    def frames(count: int) -> str | None:
        return None if count % 4 == 1 else f"{name}'s causal VAE needs 4k+1 frames, got {count}"

    return frames


@dataclass(frozen=True)
class Family:
    name: str
    denoiser: str  # pipeline component and LoRA key prefix: unet | transformer
    video: bool
    latents: Callable
    prompts: Callable
    frames: Callable[[int], str | None] = _any_frames  # a frame count's problem, or None
    load_kwargs: tuple = ()  # extra from_pretrained kwargs for the pipeline
    frame_cond: Callable[[dict, int], dict] = _as_is  # a batch's cond (B, ...) as the denoiser reads it
    image_cond: Callable | None = None  # image-to-video: (pipe, images, frames) -> per-row cond of the reference image

    def denoiser_cond(self, cond: dict | None, x0: torch.Tensor) -> dict | None:
        """The condition of a batch of samples ``x0`` (B, C, [T,] H, W) as the denoiser's forward reads it."""
        return None if cond is None else self.frame_cond(cond, x0.shape[2] if self.video else 1)

    def check_sample(self, shape: tuple[int, ...], where: str) -> None:
        """``shape``: one pixel sample, (3, H, W) or (3, T, H, W)."""
        if self.video != (len(shape) == 4):
            kind = "videos (3, T, H, W)" if self.video else "images (3, H, W)"
            raise ConfigError(f"{where}: model.family={self.name} trains on {kind}, the data has shape {shape}")
        problem = self.frames(shape[1]) if self.video else None
        if problem:
            raise ConfigError(f"{where}: data.num_frames: {problem}")


FAMILIES = {
    "sd15": Family("sd15", "unet", False, _vae_latents, _clip_prompts, load_kwargs=(("safety_checker", None),)),
    "sdxl": Family("sdxl", "unet", False, _vae_latents, _sdxl_prompts),
    "animatediff": Family("animatediff", "unet", True, _vae_latents, _clip_prompts, frame_cond=_per_frame),
    "sd3": Family("sd3", "transformer", False, _vae_latents, _sd3_prompts),
    "flux": Family("flux", "transformer", False, _vae_latents, _flux_prompts),
    "wan": Family("wan", "transformer", True, _wan_latents, _wan_prompts, frames=_causal("Wan")),
    "wan_i2v": Family("wan_i2v", "transformer", True, _wan_latents, _wan_prompts, frames=_causal("Wan"),
                      image_cond=_wan_image),
    "cogvideox": Family("cogvideox", "transformer", True, _cogvideox_latents, _cogvideox_prompts,
                        frames=_causal("CogVideoX"), image_cond=_cogvideox_image),
}


def family(name: str | None) -> Family | None:
    if name is None:
        return None
    if name not in FAMILIES:
        raise ConfigError(f"model.family: unknown family {name!r} (known: {sorted(FAMILIES)}, or null)")
    return FAMILIES[name]


def pipeline_class(path: Path):
    """The diffusers pipeline class a folder's ``model_index.json`` names."""
    import diffusers

    index = Path(path) / "model_index.json"
    if not index.is_file():
        raise ConfigError(f"model.path: {path} has no model_index.json (model.family needs a diffusers pipeline folder)")
    name = diffusers.DiffusionPipeline.load_config(str(path))["_class_name"]
    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ConfigError(f"{index}: diffusers has no pipeline class {name!r}")
    return cls


def image_to_video(fam: Family, path: Path) -> bool:
    """Whether ``path`` holds the image-to-video pipeline of a family that has one (its class name)."""
    return fam.image_cond is not None and "ImageToVideo" in pipeline_class(path).__name__


def check_folder(fam: Family, path: Path) -> None:
    """One line when the pipeline folder is not what ``model.family`` trains."""
    import diffusers

    cls = pipeline_class(path).__name__  # first: a folder without model_index.json is named in one line
    index = diffusers.DiffusionPipeline.load_config(str(path))
    if fam.name in ("wan", "wan_i2v") and ("ImageToVideo" in cls) != (fam.name == "wan_i2v"):
        other = "wan" if fam.name == "wan_i2v" else "wan_i2v"
        raise ConfigError(f"model.family={fam.name}: {path} holds a {cls}; use model={other}")
    if fam.name == "wan_i2v" and (index.get("expand_timesteps") or (index.get("transformer_2") or [None])[0]):
        raise ConfigError(f"model.path: {path} is Wan 2.2 image-to-video (its latent condition replaces frames, or a "
                          "second transformer takes the low-noise steps); prefopt trains Wan 2.1's I2V only")


def load_encoders(fam: Family, path: Path, dtype: torch.dtype = torch.float32):
    """The family's pipeline from ``path`` with its VAE and text encoders only (no denoiser)."""
    return pipeline_class(path).from_pretrained(str(path), torch_dtype=dtype, **{fam.denoiser: None},
                                                **dict(fam.load_kwargs))
