"""SynthHands Animation reward: five dimensions in [0, 1] from the detector alone, and their mean.

    appearance    mean over frames of the graded hand reward (prefopt/tasks/synthhands/reward.py)
    consistency   (share of consecutive frames with the same finger count
                   + (1 - mean palm-centre jump / MAX_JUMP, clamped)) / 2
    motion        mean over frames of 1 - |orientation - driven angle| / pi; the orientation points
                  from the middle of the largest gap on the detector's ring through the palm centre
                  (:func:`ring_pose`); a frame with fewer than two fingers scores 0
    faithfulness  appearance kept: mean over frames of 1 - colour shift / MAX_SHIFT (clamped); a
                  frame's shift is the larger of its skin's and its background's mean absolute
                  difference from the reference image's (mean colour inside / outside the detected
                  foreground)
    synchrony     mean over frames of 1 - |detected arc - the audio's arc| / the arc range (clamped);
                  the detected arc spans the ring from the first finger's centre to the last's
                  (:func:`ring_pose`); a frame with fewer than two fingers scores 0
    reward        the mean of the five                                   (GAPO's gap uses it)
    good          every frame a strict good hand, one finger count, every angle within
                  MAX_ANGLE_ERROR, every arc within MAX_ARC_ERROR, every colour shift within MAX_COLOUR_SHIFT

One reward call per clip. The tolerances hold clean renders (tests/tasks/synthhands_anim/test_reward.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prefopt.tasks.synthhands.detect import RING_OFFSET, RING_POINTS, foreground
from prefopt.tasks.synthhands.reward import score as hand_score
from prefopt.tasks.synthhands_anim.animate import ARC_RANGE, loudness, spread

MAX_JUMP = 2.0  # px of palm-centre movement per frame that scores 0
MAX_ANGLE_ERROR = math.radians(40)  # clean renders: 99% of frames within 30 degrees at 16 px
MAX_ARC_ERROR = math.radians(25)  # clean renders: 99% of frames within 18 degrees at 16 px
MAX_SHIFT = 0.5  # colour shift that scores 0 (a drifting clip ends 0.3-0.5 away)
MAX_COLOUR_SHIFT = 0.2  # clean renders stay within 0.15 (edge pixels); a drift ends 0.3 or more away
DIMENSIONS = ("appearance", "consistency", "motion", "faithfulness", "synchrony")


@dataclass
class AnimationScore:
    appearance: torch.Tensor  # (N,)
    consistency: torch.Tensor
    motion: torch.Tensor
    faithfulness: torch.Tensor
    synchrony: torch.Tensor
    reward: torch.Tensor
    good: torch.Tensor  # (N,) bool
    angle_error: torch.Tensor  # (N, T) radians, pi where no hand
    arc_error: torch.Tensor  # (N, T) radians, the arc range where no finger
    colour_shift: torch.Tensor  # (N, T)
    mask: torch.Tensor  # (N, 1, T, H, W) the detected foreground, hand masks for hand-aware weighting


def ring_pose(detection) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(orientation (N,), arc (N,), found (N,) bool) read from the fingers on the detector's ring.

    The largest background gap on the ring is the back of the hand: the orientation points opposite
    its middle, and the arc runs from the centre of the finger after the gap to the centre of the one
    before it (the full turn less the gap and half of each of those two fingers). ``found``: two
    fingers or more."""
    sector = 2 * math.pi / RING_POINTS
    present = detection.run_lengths > 0
    count = present.sum(dim=1)
    ring = (detection.palm_radius + RING_OFFSET).clamp_min(1e-6)
    gap = (detection.gaps / (ring[:, None] * sector)).round()  # samples
    before = gap.argmax(dim=1, keepdim=True)
    after = (before + 1) % count.clamp_min(1)[:, None]
    length = detection.run_lengths.float()
    largest = gap.gather(1, before)[:, 0]
    end = detection.starts.gather(1, before)[:, 0].float() + length.gather(1, before)[:, 0]  # first gap sample
    middle = end + (largest - 1) / 2
    orientation = middle * sector + math.pi
    arc = (RING_POINTS - largest - (length.gather(1, before)[:, 0] + length.gather(1, after)[:, 0]) / 2) * sector
    return orientation, arc, count >= 2


def colours(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 6): the mean colour inside the detected foreground, then outside it."""
    inside = foreground(images)[0][:, None].float()
    outside = 1 - inside

    def mean(weight):
        return (images * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3)).clamp_min(1)

    return torch.cat([mean(inside), mean(outside)], dim=1)


def score_clips(clips: torch.Tensor, cond: dict) -> AnimationScore:
    """Clips (N, 3, T, H, W) in [-1, 1] against their condition (``motion``, ``audio``, ``reference``)."""
    n, _, frames = clips.shape[:3]
    scored = hand_score(clips.transpose(1, 2).flatten(0, 1))
    appearance = scored.reward.view(n, frames).mean(dim=1)
    counts = scored.detection.fingers.view(n, frames)
    same = (counts[:, 1:] == counts[:, :-1]).float().mean(dim=1) if frames > 1 else torch.ones(n)
    centre = scored.detection.center.view(n, frames, 2)
    jump = (centre[:, 1:] - centre[:, :-1]).norm(dim=-1).mean(dim=1) if frames > 1 else torch.zeros(n)
    consistency = (same + (1 - jump / MAX_JUMP).clamp(0, 1)) / 2

    motion_cond = cond["motion"]
    angle, arc, found = ring_pose(scored.detection)
    wanted = torch.atan2(motion_cond[:, 2, :, 0, 0], motion_cond[:, 1, :, 0, 0])  # (N, T): its cos and sin maps
    error = torch.remainder(angle.view(n, frames) - wanted + math.pi, 2 * math.pi) - math.pi
    error = torch.where(found.view(n, frames), error.abs(), torch.full_like(wanted, math.pi))
    motion = (1 - error / math.pi).mean(dim=1)

    arc_range = ARC_RANGE[1] - ARC_RANGE[0]
    audio = (cond["audio"][:, 0, :, 0, 0] + 1) / 2  # (N, rate * T): its constant maps
    arc_error = (arc.view(n, frames) - spread(loudness(audio, audio.shape[1] // frames))).abs()
    arc_error = torch.where(found.view(n, frames), arc_error, torch.full_like(arc_error, arc_range))
    synchrony = (1 - arc_error / arc_range).clamp(0, 1).mean(dim=1)

    reference = colours(cond["reference"])  # (N, 6)
    shift = (colours(clips.transpose(1, 2).flatten(0, 1)).view(n, frames, 2, 3) - reference.view(n, 1, 2, 3))
    shift = shift.abs().mean(dim=3).amax(dim=2)  # (N, T): the larger of the skin and the background shifts
    faithfulness = (1 - shift / MAX_SHIFT).clamp(0, 1).mean(dim=1)

    good = (scored.good.view(n, frames).all(dim=1) & (counts == counts[:, :1]).all(dim=1)
            & (error <= MAX_ANGLE_ERROR).all(dim=1) & (arc_error <= MAX_ARC_ERROR).all(dim=1)
            & (shift <= MAX_COLOUR_SHIFT).all(dim=1))
    reward = (appearance + consistency + motion + faithfulness + synchrony) / 5
    mask = scored.detection.mask.view(n, frames, 1, *clips.shape[3:]).transpose(1, 2)
    return AnimationScore(appearance, consistency, motion, faithfulness, synchrony, reward, good, error, arc_error,
                          shift, mask)
