"""SynthHands Animation reward: three dimensions in [0, 1] from the detector alone, and their mean.

    appearance   mean over frames of the graded hand reward (prefopt/tasks/synthhands/reward.py)
    consistency  (share of consecutive frames with the same finger count
                  + (1 - mean palm-centre jump / MAX_JUMP, clamped)) / 2
    motion       mean over frames of 1 - |orientation - driven angle| / pi; the orientation is the
                 direction from the palm centre to the mean foreground pixel beyond the palm
                 (the middle of the finger arc); a frame with no hand scores 0
    reward       (appearance + consistency + motion) / 3           (GAPO's gap uses it)
    good         every frame a strict good hand, one finger count, every angle within MAX_ANGLE_ERROR
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prefopt.tasks.synthhands.reward import score as hand_score

MAX_JUMP = 2.0  # px of palm-centre movement per frame that scores 0
MAX_ANGLE_ERROR = math.radians(40)  # clean renders: 99% of frames within 30 degrees at 16 px
PALM_MARGIN = 1.0  # px beyond the palm radius where the fingers start


@dataclass
class AnimationScore:
    appearance: torch.Tensor  # (N,)
    consistency: torch.Tensor
    motion: torch.Tensor
    reward: torch.Tensor
    good: torch.Tensor  # (N,) bool
    angle_error: torch.Tensor  # (N, T) radians, pi where no hand


def orientation(detection) -> tuple[torch.Tensor, torch.Tensor]:
    """(angle (N,), found (N,) bool): the direction of the finger mass from the palm centre."""
    mask = detection.mask[:, 0] > 0
    n, h, w = mask.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    dx = xs[None] - detection.center[:, 0, None, None]
    dy = ys[None] - detection.center[:, 1, None, None]
    beyond = mask & (torch.hypot(dx, dy) > (detection.palm_radius + PALM_MARGIN)[:, None, None])
    sx, sy = (dx * beyond).flatten(1).sum(1), (dy * beyond).flatten(1).sum(1)
    return torch.atan2(sy, sx), beyond.flatten(1).any(dim=1)


def score_clips(clips: torch.Tensor, condition: torch.Tensor) -> AnimationScore:
    """Clips (N, 3, T, H, W) in [-1, 1] against their motion condition (N, 3, T, H, W): one reward call per clip."""
    n, _, frames = clips.shape[:3]
    scored = hand_score(clips.transpose(1, 2).flatten(0, 1))
    appearance = scored.reward.view(n, frames).mean(dim=1)
    counts = scored.detection.fingers.view(n, frames)
    same = (counts[:, 1:] == counts[:, :-1]).float().mean(dim=1) if frames > 1 else torch.ones(n)
    centre = scored.detection.center.view(n, frames, 2)
    jump = (centre[:, 1:] - centre[:, :-1]).norm(dim=-1).mean(dim=1) if frames > 1 else torch.zeros(n)
    consistency = (same + (1 - jump / MAX_JUMP).clamp(0, 1)) / 2
    angle, found = orientation(scored.detection)
    wanted = torch.atan2(condition[:, 2, :, 0, 0], condition[:, 1, :, 0, 0])  # (N, T): its cos and sin maps
    error = torch.remainder(angle.view(n, frames) - wanted + math.pi, 2 * math.pi) - math.pi
    error = torch.where(found.view(n, frames), error.abs(), torch.full_like(wanted, math.pi))
    motion = (1 - error / math.pi).mean(dim=1)
    good = (scored.good.view(n, frames).all(dim=1) & (counts == counts[:, :1]).all(dim=1)
            & (error <= MAX_ANGLE_ERROR).all(dim=1))
    return AnimationScore(appearance, consistency, motion, (appearance + consistency + motion) / 3, good, error)
