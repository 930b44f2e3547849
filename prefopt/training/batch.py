"""One batch's loss: winners (and losers) noised once, policy and reference errors in one batched
forward each, then the objective's equation on what it reads."""

from __future__ import annotations

import torch

from prefopt.core import preference_errors
from prefopt.errors import ConfigError
from prefopt.modules.hand_aware import HandAware
from prefopt.modules.hand_aware.grid import region_weights
from prefopt.objectives import objective_inputs


def forever(loader):
    """Batches from ``loader``, epoch after epoch."""
    while True:
        yield from loader


def _weights(objective, batch: dict, hand_aware: HandAware | None):
    """(region weights or None, the hand masks of the concatenated batch or None)."""
    mask = batch.get("mask_w")
    if mask is not None and objective.paired:
        mask = torch.cat([mask, batch["mask_l"]]) if "mask_l" in batch else None
    if hand_aware is None or not hand_aware.enabled:
        return None, mask
    if mask is None:
        raise ConfigError("hand_aware.enabled: the batch has no hand masks")
    return region_weights(mask, hand_aware.weight, hand_aware.reference_frame), mask


def batch_loss(objective, model, reference, process, batch: dict, hand_aware: HandAware | None = None,
               shard: tuple[int, int] = (0, 1), family=None):
    """One batch's ``(loss, metrics)``.

    ``batch``: ``winner`` (B, ...), for paired objectives ``loser``, optional ``reward_w``/``reward_l``,
    hand masks ``mask_w``/``mask_l`` and ``cond`` (per-sample model kwargs such as
    ``encoder_hidden_states``). With ``hand_aware.enabled`` the errors weigh the hand by
    W = 1 + (lambda - 1) M; whenever masks are given, the policy's error inside and outside them is
    logged (``err_in_hand``, ``err_out_hand``). ``shard=(rank, world)``: this process's part of a
    data-parallel global batch (the noise is drawn for the whole of it). ``family``: a latent model
    family, which may lay out ``cond`` its own way (AnimateDiff: per frame)."""
    inputs = objective_inputs(objective)
    x0 = torch.cat([batch["winner"], batch["loser"]]) if objective.paired else batch["winner"]
    weights, mask = _weights(objective, batch, hand_aware)
    cond = family.denoiser_cond(batch.get("cond"), batch["winner"]) if family else batch.get("cond")
    errors = preference_errors(model, reference if "ref_err" in inputs else None, process, x0,
                               groups=2 if objective.paired else 1, cond=cond, weights=weights,
                               with_stats="policy_stats" in inputs, region=mask, shard=shard)
    available = {"policy_err": errors.policy_err, "ref_err": errors.ref_err, "t": errors.t,
                 "policy_stats": errors.policy_stats, "ref_stats": errors.ref_stats,
                 "reward_w": batch.get("reward_w"), "reward_l": batch.get("reward_l")}
    loss, metrics = objective(**{name: available[name] for name in inputs})
    if errors.region_err is not None:
        inside, outside = errors.region_err
        metrics = {**metrics, "err_in_hand": inside.nanmean(), "err_out_hand": outside.nanmean()}
    return loss, metrics
