"""Drift from the prior: a model's denoising error on clean data it was not trained to prefer (renders,
real images), on fixed noise and timesteps, so that the base model and a trained one are measured on
the same draws and their difference is the drift."""

from __future__ import annotations

import torch


def denoising_errors(denoiser, scheduler, clean: torch.Tensor, generator: torch.Generator, cond: dict | None = None,
                     region: torch.Tensor | None = None):
    """The PreferenceErrors (prefopt.core) of ``denoiser`` on ``clean`` (N, C, H, W) or (N, C, T, H, W):
    one noise and one timestep per sample drawn from ``generator``; in eval mode, no gradients."""
    from prefopt.core import NoiseProcess, preference_errors

    was_training = denoiser.training
    denoiser.eval()
    with torch.no_grad():
        errors = preference_errors(denoiser, None, NoiseProcess(scheduler), clean, cond=cond, region=region,
                                   generator=generator)
    denoiser.train(was_training)
    return errors
