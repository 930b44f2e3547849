"""Per-sample errors of policy and reference on the SAME clean samples, noise and timesteps.

Winners and losers go through ONE batched forward (concatenated along the batch), policy and
reference alike. The reference runs first, under ``torch.no_grad()``, so its transient activations
are gone before the policy's forward keeps its own for backward: the step's peak memory stays at
SFT's on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prefopt.core.noise import Noised, NoiseProcess
from prefopt.core.reference import Reference
from prefopt.core.weighting import per_sample_error


@dataclass
class PreferenceErrors:
    policy_err: torch.Tensor  # (groups, B), or (B,) when groups == 1
    ref_err: torch.Tensor | None
    t: torch.Tensor  # (B,) noise level in [0, 1]
    noised: Noised
    policy_stats: torch.Tensor | None = None  # (groups * B, 2C) per-channel mean and std of predictions
    ref_stats: torch.Tensor | None = None
    region_err: tuple[torch.Tensor, torch.Tensor] | None = None  # (groups * B,) x 2: policy error inside, outside the mask (no grad; NaN where empty)


def predict(network, noised: Noised, cond: dict | None) -> torch.Tensor:
    """The network's prediction for a noised batch; ``cond`` tensors are per sample (B, ...) and
    are repeated for each group member (winner and loser share the prompt)."""
    return network(noised.x_t, timestep=noised.timesteps, return_dict=False, **_repeat(cond or {}, noised.groups))[0]


def _repeat(cond: dict, groups: int) -> dict:
    """Each (B, ...) tensor of a (nested: SDXL's ``added_cond_kwargs``) dict as (groups * B, ...)."""
    return {k: _repeat(v, groups) if isinstance(v, dict) else v.repeat(groups, *([1] * (v.dim() - 1)))
            for k, v in cond.items()}


def channel_stats(prediction: torch.Tensor) -> torch.Tensor:
    """(N, 2C): per-channel mean and standard deviation over all other axes."""
    flat = prediction.float().flatten(2)
    return torch.cat([flat.mean(dim=-1), flat.std(dim=-1)], dim=-1)


def preference_errors(policy, reference: Reference | None, process: NoiseProcess, x0: torch.Tensor,
                      groups: int = 1, cond: dict | None = None, weights: torch.Tensor | None = None,
                      with_stats: bool = False, region: torch.Tensor | None = None, generator=None,
                      shard: tuple[int, int] = (0, 1)) -> PreferenceErrors:
    """Noise ``x0`` (groups * B, ...) once, run the policy (with grad) and the reference (no grad).

    ``reference=None`` skips the reference pass (SFT). ``weights`` broadcast against ``x0``.
    ``region``: a mask in [0, 1] (e.g. the hand) broadcasting against ``x0``; the policy's error
    inside and outside it is reported as ``region_err`` (a diagnostic: no gradient).
    ``shard=(rank, world)``: this process's part of a data-parallel global batch (NoiseProcess.noise).
    """
    noised = process.noise(x0, groups=groups, generator=generator, shard=shard)
    shape = (groups, -1) if groups > 1 else (-1,)
    ref_err = ref_stats = None
    if reference is not None:  # first: its activations are freed before the policy's are kept for backward
        with torch.no_grad(), reference() as network:
            ref_pred = predict(network, noised, cond)
            ref_err = per_sample_error(ref_pred, noised.target, weights).view(shape)
            ref_stats = channel_stats(ref_pred) if with_stats else None
            del ref_pred
    policy_pred = predict(policy, noised, cond)
    policy_err = per_sample_error(policy_pred, noised.target, weights).view(shape)
    region_err = None
    if region is not None:
        with torch.no_grad():
            region_err = (per_sample_error(policy_pred, noised.target, region),
                          per_sample_error(policy_pred, noised.target, 1 - region))
    return PreferenceErrors(policy_err=policy_err, ref_err=ref_err, t=noised.t, noised=noised,
                            policy_stats=channel_stats(policy_pred) if with_stats else None, ref_stats=ref_stats,
                            region_err=region_err)
