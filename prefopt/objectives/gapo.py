"""GAPO: Gap-Aware Preference Optimization ("Aligning Anime Video Generation with Human Feedback",
arXiv 2504.10044; code bilibili/Index-anisora, anisora_rl/loss.py).

    g = 2^{s_w} - 2^{s_l}          s = reward normalized to [0, 1]
    L = mean_B [ g * ( - log sigma( -(beta / 2) * d ) ) ]      d as in Diffusion-DPO

The original multiplies the batch-mean loss by the weight (per-sample only at batch size 1); we
apply g per pair. Pairs with s_w <= s_l are rejected at data validation, not here (no host sync
in the step). ``gap_transform`` offers the other weightings found in their code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from prefopt.errors import ConfigError
from prefopt.objectives._checks import check_beta, check_paired
from prefopt.objectives.dpo import paired_metrics, preference_logits

GAP_TRANSFORMS = {
    "pow2": lambda s_w, s_l: torch.pow(2.0, s_w) - torch.pow(2.0, s_l),
    "pow3": lambda s_w, s_l: torch.pow(3.0, s_w) - torch.pow(3.0, s_l),
    "ratio": lambda s_w, s_l: 1.0 - torch.pow(2.0, s_l) / torch.pow(2.0, s_w),
}


@dataclass
class GAPO:
    """Gap-weighted Diffusion-DPO on ``(2, B)`` errors and ``(B,)`` rewards in [0, 1]."""

    paired: ClassVar[bool] = True
    beta: float = 5000.0
    gap_transform: str = "pow2"

    def __post_init__(self):
        check_beta(self.beta)
        if self.gap_transform not in GAP_TRANSFORMS:
            raise ConfigError(f"objective.gap_transform must be one of {sorted(GAP_TRANSFORMS)}, got {self.gap_transform!r}")

    def __call__(self, policy_err: torch.Tensor, ref_err: torch.Tensor, reward_w: torch.Tensor, reward_l: torch.Tensor):
        check_paired(policy_err, ref_err, reward_w, reward_l)
        gap = GAP_TRANSFORMS[self.gap_transform](reward_w, reward_l).to(policy_err.dtype)
        logits = preference_logits(policy_err, ref_err, self.beta)
        loss = (gap * -F.logsigmoid(logits)).mean()
        metrics = paired_metrics(policy_err, ref_err, logits)
        metrics["gap_weight"] = gap.mean().detach()
        return loss, metrics
