"""SynthHands preference data labelled by the renderer's ground truth.

- winners: good hands (k = 5, fingers separated);
- losers (paired): the same pose and colours with a bad hand (k in {3, 4, 6, 7}, or fused fingers);
- rewards: s = 1 - |k - 5| / 4 (fused: 0.5), so s_w = 1 > s_l;
- HG-DPO stages: the winner moves from "generated-like" toward real renders: easy winners carry
  strong pixel noise, normal winners mild noise, hard winners are clean renders.

Model-generated pools scored by the detector replace the ground-truth labels in the SynthHands
benchmark (SPEC s.4).
"""

from __future__ import annotations

import torch

from prefopt.data.preference import PreferenceDataset
from prefopt.synth.render import (
    BAD_FINGERS,
    FUSED_ARC_DEGREES,
    GOOD_FINGERS,
    render,
    sample_specs,
)

STAGE_NOISE = {"easy": 0.3, "normal": 0.15, "hard": 0.0, None: 0.0}


def build_synth(cfg, paired: bool, stage: str | None = None) -> PreferenceDataset:
    n, size = cfg.num_samples, cfg.image_size
    generator = torch.Generator().manual_seed(cfg.seed)
    spec = sample_specs(n, size, generator=generator)
    winner, _ = render(spec, size)
    noise = STAGE_NOISE[stage]
    if noise:
        winner = (winner + noise * torch.randn(winner.shape, generator=generator)).clamp(-1, 1)
    if not paired:
        return PreferenceDataset(winner, name="data=synth")
    bad = torch.tensor(BAD_FINGERS)[torch.randint(0, len(BAD_FINGERS), (n,), generator=generator)]
    fused = torch.rand(n, generator=generator) < 0.2
    spec.fingers = torch.where(fused, torch.full_like(bad, GOOD_FINGERS), bad)
    spec.arc = torch.where(fused, torch.deg2rad(torch.tensor(FUSED_ARC_DEGREES)), spec.arc)
    loser, _ = render(spec, size)
    reward_l = torch.where(fused, torch.tensor(0.5), 1 - (spec.fingers - GOOD_FINGERS).abs().float() / 4)
    return PreferenceDataset(winner, loser, torch.ones(n), reward_l, name="data=synth")
