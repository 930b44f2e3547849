"""Batched, seeded sampling from a denoiser with diffusers schedulers.

Sample ``i`` of ``generate(..., seed=s)`` starts from the ``i``-th noise draw of a generator seeded
with ``s``, so a sample does not depend on the batch size. Flow-matching models integrate with
``FlowMatchEulerDiscreteScheduler`` (Euler); the DDPM family with ``DDIMScheduler`` (eta = 0),
each built from the training scheduler's config.

``reconstruct`` is SDEdit: noise an image to ``strength`` of the schedule and denoise it.
"""

from __future__ import annotations

import hashlib

import torch


def sampling_scheduler(training_scheduler, steps: int):
    from diffusers import DDIMScheduler

    if hasattr(training_scheduler, "scale_noise"):
        scheduler = type(training_scheduler).from_config(training_scheduler.config)
    else:
        scheduler = DDIMScheduler.from_config(training_scheduler.config)
    scheduler.set_timesteps(steps)
    return scheduler


def model_fingerprint(denoiser: torch.nn.Module) -> str:
    """A hash of the denoiser's class, config and weights (what its samples depend on)."""
    digest = hashlib.sha256(type(denoiser).__name__.encode())
    config = {k: v for k, v in getattr(denoiser, "config", {}).items() if not k.startswith("_")}  # not _name_or_path
    digest.update(repr(sorted(config.items())).encode())
    for name, tensor in sorted(denoiser.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def _denoise(denoiser, training_scheduler, x: torch.Tensor, steps: int, start: int, batch_size: int,
             cond: dict | None = None) -> torch.Tensor:
    """Integrate ``x`` (CPU) from sampling step ``start`` to the end, in eval mode and in chunks;
    float32 on the CPU, clamped to [-1, 1]. ``cond``: per-sample denoiser kwargs, (N, ...) tensors."""
    device = next(denoiser.parameters()).device
    was_training = denoiser.training
    denoiser.eval()
    out = []
    try:
        for first in range(0, len(x), batch_size):
            scheduler = sampling_scheduler(training_scheduler, steps)
            chunk = x[first:first + batch_size].to(device)
            kwargs = {k: v[first:first + batch_size].to(device) for k, v in (cond or {}).items()}
            for timestep in scheduler.timesteps[start:]:
                t = timestep.expand(chunk.shape[0]).to(device)
                chunk = scheduler.step(denoiser(chunk, t, **kwargs).sample, timestep, chunk).prev_sample
            out.append(chunk.float().cpu())
    finally:
        denoiser.train(was_training)
    return torch.cat(out).clamp(-1, 1)


def generate(denoiser, training_scheduler, n: int, seed: int, steps: int = 30, batch_size: int = 512,
             sample_shape: tuple[int, ...] | None = None, cond: dict | None = None) -> torch.Tensor:
    """(n, C, H, W) (or ``sample_shape``) samples clamped to [-1, 1], in float32 on the CPU."""
    config = denoiser.config
    shape = sample_shape or (config.in_channels, config.sample_size, config.sample_size)
    noise = torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))
    return _denoise(denoiser, training_scheduler, noise, steps, 0, batch_size, cond)


def reconstruct(denoiser, training_scheduler, images: torch.Tensor, strength: float, seed: int,
                steps: int = 30, batch_size: int = 512, cond: dict | None = None) -> torch.Tensor:
    """SDEdit: noise ``images`` to ``strength`` in (0, 1] of the sampling schedule and denoise them."""
    scheduler = sampling_scheduler(training_scheduler, steps)
    start = steps - max(1, round(strength * steps))
    timestep = scheduler.timesteps[start].expand(len(images))
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    if hasattr(scheduler, "scale_noise"):
        noised = scheduler.scale_noise(images, timestep, noise)
    else:
        noised = scheduler.add_noise(images, noise, timestep)
    return _denoise(denoiser, training_scheduler, noised, steps, start, batch_size, cond)


def cached_samples(model, n: int, seed: int, steps: int, sample_shape: tuple[int, ...] | None = None,
                   cond: dict | None = None, tag: str = "") -> torch.Tensor:
    """``n`` samples of ``model`` (a ModelBundle), cached under ``$PREFOPT_CACHE/samples``; ``tag``
    names what else decides them (a conditioned pool: how its conditions were drawn)."""
    from safetensors.torch import load_file

    from prefopt.io import save_tensors
    from prefopt.paths import cache_root

    name = f"{model_fingerprint(model.denoiser)}-n{n}-seed{seed}-steps{steps}{tag}.safetensors"
    path = cache_root() / "samples" / name
    if path.is_file():
        return load_file(path)["samples"]
    samples = generate(model.denoiser, model.scheduler, n, seed=seed, steps=steps, sample_shape=sample_shape,
                       cond=cond)
    save_tensors(path, {"samples": samples})
    return samples
