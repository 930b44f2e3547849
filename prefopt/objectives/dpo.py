"""Diffusion-DPO (Wallace et al. 2023, "Diffusion Model Alignment Using Direct Preference
Optimization", arXiv 2311.12908).

    d = (e_theta(w) - e_ref(w)) - (e_theta(l) - e_ref(l))
    L = - mean_B log sigma( -(beta / 2) * d )

``e_m(x)`` is the per-sample denoising error of model m on the same noise and timestep for the
winner w and loser l. We use the ``beta/2`` convention with beta = 5000, as the authors' code
(SalesforceAIResearch/DiffusionDPO) and diffusers' SDXL example do; diffusers' SD1.5 example drops
the 1/2 and uses 2500, which is the same number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from prefopt.objectives._checks import check_beta, check_paired


def preference_logits(policy_err: torch.Tensor, ref_err: torch.Tensor, beta: float) -> torch.Tensor:
    """Implicit reward margin ``-(beta/2) * d`` per pair; errors are ``(2, B)``, row 0 winners."""
    policy_diff = policy_err[0] - policy_err[1]
    ref_diff = ref_err[0] - ref_err[1]
    return -0.5 * beta * (policy_diff - ref_diff)


def paired_metrics(policy_err: torch.Tensor, ref_err: torch.Tensor, logits: torch.Tensor) -> dict:
    """What makes a flat DPO loss readable: implicit accuracy (ties count 1/2), the reward margin,
    and the policy and reference errors of winners and losers."""
    accuracy = (logits > 0).float() + 0.5 * (logits == 0).float()
    return {
        "implicit_acc": accuracy.mean().detach(),
        "reward_margin": logits.mean().detach(),
        "policy_err_w": policy_err[0].mean().detach(),
        "policy_err_l": policy_err[1].mean().detach(),
        "ref_err_w": ref_err[0].mean().detach(),
        "ref_err_l": ref_err[1].mean().detach(),
    }


@dataclass
class DPO:
    """Diffusion-DPO on ``(2, B)`` per-sample errors (row 0 winners, row 1 losers)."""

    paired: ClassVar[bool] = True
    beta: float = 5000.0

    def __post_init__(self):
        check_beta(self.beta)

    def __call__(self, policy_err: torch.Tensor, ref_err: torch.Tensor):
        check_paired(policy_err, ref_err)
        logits = preference_logits(policy_err, ref_err, self.beta)
        loss = -F.logsigmoid(logits).mean()
        return loss, paired_metrics(policy_err, ref_err, logits)
