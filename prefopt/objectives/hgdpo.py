"""HG-DPO (Na, Kim, Lee, "Boost Your Human Image Generation Model via Direct Preference
Optimization", arXiv 2405.20216, CVPR 2025; no public code).

Diffusion-DPO trained through a curriculum whose winners move from generated toward real images:

    easy:   winner = best generated image of a pool, loser = a worse one
    normal: winner = an intermediate-domain image (a real image part-noised and denoised by the model)
    hard:   winner = the real image, loser = a generated image

    L_stage = L_DPO(beta) + stat_weight * L_stat

each stage starting from the previous stage's model. Verified: real winners, the three-stage
curriculum, a statistics-matching term that corrects colour shift. Unverified, so ours and
configurable: ``L_stat`` matches the per-channel mean and standard deviation of the policy's
prediction to the reference's on the same inputs,

    L_stat = mean_{rows, c} (mu_theta - mu_ref)^2 + (s_theta - s_ref)^2,

a colour drift of the policy shows as a drift of these statistics; ``reference`` chooses whether
each stage's reference is the base model or the previous stage's model (default: base);
``stage_fractions`` splits the training steps between stages (default: equal thirds).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
import torch.nn.functional as F

from prefopt.errors import ConfigError
from prefopt.objectives._checks import check_beta, check_paired
from prefopt.objectives.dpo import paired_metrics, preference_logits

STAGES = ("easy", "normal", "hard")
REFERENCES = ("base", "previous_stage")


def statistics_matching(policy_stats: torch.Tensor, ref_stats: torch.Tensor) -> torch.Tensor:
    """Squared difference of per-channel (mean, std) statistics, ``(N, 2C)`` each, averaged."""
    return (policy_stats.float() - ref_stats.float()).pow(2).sum(dim=-1).mean() / (policy_stats.shape[-1] // 2)


@dataclass
class HGDPO:
    """Diffusion-DPO at one curriculum ``stage`` on ``(2, B)`` errors, plus the statistics term."""

    paired: ClassVar[bool] = True
    beta: float = 5000.0
    stage: str = "hard"
    stage_fractions: list[float] = field(default_factory=lambda: [1 / 3, 1 / 3, 1 / 3])
    reference: str = "base"
    stat_weight: float = 1.0

    def __post_init__(self):
        check_beta(self.beta)
        if self.stage not in STAGES:
            raise ConfigError(f"objective.stage must be one of {STAGES}, got {self.stage!r}")
        if self.reference not in REFERENCES:
            raise ConfigError(f"objective.reference must be one of {REFERENCES}, got {self.reference!r}")
        if len(self.stage_fractions) != len(STAGES) or not all(f >= 0 for f in self.stage_fractions) or not sum(self.stage_fractions) > 0:
            raise ConfigError(f"objective.stage_fractions must be {len(STAGES)} non-negative numbers, got {list(self.stage_fractions)}")
        if self.stat_weight < 0:
            raise ConfigError(f"objective.stat_weight must be >= 0, got {self.stat_weight}")

    def at_stage(self, stage: str) -> HGDPO:
        """This objective at curriculum ``stage`` (a new value; the loop never sets attributes)."""
        return replace(self, stage=stage)

    def curriculum(self, total_steps: int) -> list[tuple[str, int]]:
        """(stage, steps) in order; the steps add up to ``total_steps``."""
        total = sum(self.stage_fractions)
        bounds = [round(total_steps * sum(self.stage_fractions[: i + 1]) / total) for i in range(len(STAGES))]
        starts = [0] + bounds[:-1]
        return [(stage, end - start) for stage, start, end in zip(STAGES, starts, bounds, strict=True) if end > start]

    def __call__(self, policy_err: torch.Tensor, ref_err: torch.Tensor,
                 policy_stats: torch.Tensor | None = None, ref_stats: torch.Tensor | None = None):
        check_paired(policy_err, ref_err)
        logits = preference_logits(policy_err, ref_err, self.beta)
        dpo_loss = -F.logsigmoid(logits).mean()
        metrics = paired_metrics(policy_err, ref_err, logits)
        metrics["dpo_loss"] = dpo_loss.detach()
        loss = dpo_loss
        if self.stat_weight and policy_stats is not None and ref_stats is not None:
            stat_loss = statistics_matching(policy_stats, ref_stats)
            metrics["stat_loss"] = stat_loss.detach()
            loss = loss + self.stat_weight * stat_loss
        return loss, metrics
