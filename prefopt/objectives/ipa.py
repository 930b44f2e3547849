"""IPA: Implicit Preference Alignment (Wang et al. 2026, arXiv 2605.07545, github mdswyz/IPA).

No loser. On curated self-generated good samples x:

    L = - mean_B log sigma( (beta / 2) * (1 - t)^2 * (e_ref(x) - e_theta(x)) )

i.e. -log sigma(beta [KL(q || p_ref) - KL(q || p_theta)]): raise the implicit reward of good samples,
while the bounded logistic link keeps the policy near the prior. ``t`` in [0, 1] is the noise level
(flow matching: sigma; DDPM family: timestep / num_train_timesteps), so clean-end timesteps weigh
most. Defaults from the paper: beta = 600. Its hand-region weights (HALO, lambda = 10) act on the
per-sample error (``prefopt.core.per_sample_error``), not on this equation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from prefopt.objectives._checks import check_beta, check_unpaired


@dataclass
class IPA:
    """IPA on ``(B,)`` per-sample errors of good samples and their noise levels ``t`` in [0, 1]."""

    paired: ClassVar[bool] = False
    beta: float = 600.0

    def __post_init__(self):
        check_beta(self.beta)

    def __call__(self, policy_err: torch.Tensor, ref_err: torch.Tensor, t: torch.Tensor):
        check_unpaired(policy_err, ref_err, t)
        logits = 0.5 * self.beta * (1.0 - t) ** 2 * (ref_err - policy_err)
        loss = -F.logsigmoid(logits).mean()
        accuracy = (logits > 0).float() + 0.5 * (logits == 0).float()
        metrics = {
            "implicit_acc": accuracy.mean().detach(),
            "reward_margin": logits.mean().detach(),
            "policy_err": policy_err.mean().detach(),
            "ref_err": ref_err.mean().detach(),
        }
        return loss, metrics
