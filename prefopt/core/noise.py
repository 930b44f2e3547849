"""Noise, timestep sampling, forward noising and prediction targets, delegated to the diffusers
scheduler of the model (``add_noise`` / ``get_velocity`` for the DDPM family, ``scale_noise`` for
flow matching), so the training target is exactly the one the model's sampler assumes.

    DDPM/VP:   x_t = alpha_t x0 + sigma_t eps;  target eps | v = alpha_t eps - sigma_t x0 | x0
    flow:      x_t = (1 - t) x0 + t eps;        target eps - x0  (velocity)

``Noised.t`` is the noise level in [0, 1] that IPA's (1 - t)^2 weight reads: sigma for flow
matching, timestep / num_train_timesteps for the DDPM family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prefopt.errors import ConfigError

TIMESTEP_SAMPLING = ("uniform", "logit_normal", "mode")


@dataclass
class Noised:
    """One noised batch. ``groups`` members (winner, loser) share noise and timestep: rows
    ``g * B + i`` for g < groups all use ``noise[i]`` and ``timesteps[i]``."""

    x_t: torch.Tensor  # (groups * B, ...) model input
    timesteps: torch.Tensor  # (groups * B,) in the scheduler's units, what the model is fed
    t: torch.Tensor  # (B,) noise level in [0, 1]
    target: torch.Tensor  # (groups * B, ...)
    noise: torch.Tensor  # (B, ...)
    groups: int


class NoiseProcess:
    """Wraps a diffusers training scheduler (DDPMScheduler-like or FlowMatchEulerDiscreteScheduler)."""

    def __init__(self, scheduler, timestep_sampling: str = "uniform", logit_mean: float = 0.0,
                 logit_std: float = 1.0, mode_scale: float = 1.29):
        if timestep_sampling not in TIMESTEP_SAMPLING:
            raise ConfigError(f"trainer.timestep_sampling must be one of {TIMESTEP_SAMPLING}, got {timestep_sampling!r}")
        self.scheduler = scheduler
        self.flow = hasattr(scheduler, "scale_noise")
        self.prediction_type = "flow" if self.flow else scheduler.config.prediction_type
        self.num_train_timesteps = scheduler.config.num_train_timesteps
        self.timestep_sampling = timestep_sampling
        self.logit_mean, self.logit_std, self.mode_scale = logit_mean, logit_std, mode_scale

    def sample_indices(self, batch_size: int, generator=None) -> torch.Tensor:
        """Indices into the training schedule, (B,) long on the CPU.

        ``logit_normal``: the noise level t has logit(t) ~ N(logit_mean, logit_std) in both families
        (SD3's m and s: m > 0 favours noisier t). diffusers' helper draws a position u in the
        schedule; a DDPM schedule runs from data to noise (t = u), a flow schedule from noise to data
        (t = 1 - u), so there the mean is negated. ``mode`` is symmetric: the same either way."""
        if self.timestep_sampling == "uniform":
            return torch.randint(0, self.num_train_timesteps, (batch_size,), generator=generator)
        from diffusers.training_utils import compute_density_for_timestep_sampling

        u = compute_density_for_timestep_sampling(
            weighting_scheme=self.timestep_sampling, batch_size=batch_size,
            logit_mean=-self.logit_mean if self.flow else self.logit_mean,
            logit_std=self.logit_std, mode_scale=self.mode_scale, generator=generator)
        return (u * self.num_train_timesteps).long().clamp_(0, self.num_train_timesteps - 1)

    def noise(self, x0: torch.Tensor, groups: int = 1, generator=None, noise=None, indices=None,
              shard: tuple[int, int] = (0, 1)) -> Noised:
        """Noise ``x0`` of shape (groups * B, ...) with one eps and one t per group member set.

        ``shard=(rank, world)``: data parallel. Every process draws the noise and t of the whole
        global batch (world * B rows, from the same RNG state) and keeps its own rows, so N
        processes see exactly the noise that one process with the N-times batch would."""
        if x0.shape[0] % groups:
            raise ValueError(f"batch of {x0.shape[0]} is not divisible into {groups} groups")
        batch = x0.shape[0] // groups
        rank, world = shard
        rows = slice(rank * batch, (rank + 1) * batch)
        if noise is None:
            noise = torch.randn((world * batch, *x0.shape[1:]), generator=generator, dtype=x0.dtype)[rows].to(x0.device)
        if indices is None:
            indices = self.sample_indices(world * batch, generator)[rows]
        eps = noise.repeat(groups, *([1] * (x0.dim() - 1)))
        if self.flow:
            timesteps = self.scheduler.timesteps[indices].to(x0.device)
            t = self.scheduler.sigmas[indices].to(x0.device, torch.float32)
            timesteps = timesteps.repeat(groups)
            x_t = self.scheduler.scale_noise(x0, timesteps, eps)
            target = eps - x0
        else:
            timesteps = indices.to(x0.device).repeat(groups)
            t = indices.to(x0.device, torch.float32) / self.num_train_timesteps
            x_t = self.scheduler.add_noise(x0, eps, timesteps)
            target = self._ddpm_target(x0, eps, timesteps)
        return Noised(x_t=x_t, timesteps=timesteps, t=t, target=target, noise=noise, groups=groups)

    def _ddpm_target(self, x0, eps, timesteps):
        if self.prediction_type == "epsilon":
            return eps
        if self.prediction_type == "v_prediction":
            return self.scheduler.get_velocity(x0, eps, timesteps)
        if self.prediction_type == "sample":
            return x0
        raise ConfigError(f"model.prediction_type {self.prediction_type!r} is not supported")
