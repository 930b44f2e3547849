"""SFT: the plain denoising loss on winners, the control every comparison needs.

    L = mean_B e_theta(x)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass
class SFT:
    """Supervised fine-tuning on ``(B,)`` per-sample errors (or the winners row of ``(2, B)``)."""

    paired: ClassVar[bool] = False
    def __call__(self, policy_err: torch.Tensor):
        if policy_err.dim() == 2:
            policy_err = policy_err[0]
        loss = policy_err.mean()
        return loss, {"policy_err": loss.detach()}
