"""SynthHands Animation (SPEC s.4): clips of T frames of one hand whose orientation follows a driving
motion sequence, the condition.

    angle_t = angle_0 + velocity * (t - (T - 1) / 2)       t = 0 .. T-1, velocity in +-MAX_VELOCITY rad/frame
    motion condition (N, 3, T, H, W): a pose map (the hand's axis as a ray from the palm centre) and
                      cos(angle_t), sin(angle_t) as constant maps

A good clip: the same good hand (k = 5, fingers separated) in every frame, turning as the condition
says. Bad clips (the pretraining mixture's rest): a wrong finger count throughout (k in {3, 4, 6, 7}),
a count that flickers from frame to frame, or a hand that does not follow the condition (turned a
constant 90-270 degrees away from the driven angle).
Clips are (N, 3, T, H, W) in [-1, 1]; hand masks (N, 1, T, H, W).
"""

from __future__ import annotations

import torch

from prefopt.tasks.synthhands.render import BAD_FINGERS, GOOD_FINGERS, HandSpec, _segment_distance, render, sample_specs

MAX_VELOCITY = 0.35  # rad per frame (20 degrees)
BAD_KINDS = ("count", "flicker", "motion")


def driving_angles(n: int, frames: int, generator: torch.Generator) -> torch.Tensor:
    """(n, T) orientation per frame: a random start and a random constant velocity."""
    start = torch.rand(n, generator=generator) * 2 * torch.pi
    velocity = (torch.rand(n, generator=generator) * 2 - 1) * MAX_VELOCITY
    steps = torch.arange(frames, dtype=torch.float32) - (frames - 1) / 2
    return start[:, None] + velocity[:, None] * steps


def motion_condition(angles: torch.Tensor, size: int, center: torch.Tensor | None = None) -> torch.Tensor:
    """(N, T) angles -> (N, 3, T, size, size) per frame: a pose map (the hand's axis, a 1-px ray from
    the palm centre, ``center`` (N, 2) or the image centre, as long as the hand, anti-aliased), and
    cos and sin of the angle as constant maps."""
    n, frames = angles.shape
    if center is None:
        center = torch.full((n, 2), (size - 1) / 2)
    coords = torch.arange(size, dtype=torch.float32)
    py, px = torch.meshgrid(coords, coords, indexing="ij")
    cx, cy = center[:, 0, None, None, None], center[:, 1, None, None, None]  # (N, 1, 1, 1)
    reach = (2.5 + 4.0) * size / 16  # palm radius + finger length (prefopt/tasks/synthhands/render.py)
    bx = cx + reach * torch.cos(angles)[..., None, None]
    by = cy + reach * torch.sin(angles)[..., None, None]
    ray = (1.0 - _segment_distance(px, py, cx, cy, bx, by)).clamp(0, 1)  # (N, T, H, W)
    maps = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)[..., None, None].expand(n, 2, frames, size, size)
    return torch.cat([ray[:, None] * 2 - 1, maps], dim=1).contiguous()


def render_clips(spec: HandSpec, angles: torch.Tensor, fingers: torch.Tensor | None = None,
                 size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of ``spec``'s hands at ``angles`` (N, T); ``fingers`` (N, T) overrides the count per frame."""
    n, frames = angles.shape
    per_frame = HandSpec(fingers=(spec.fingers[:, None].expand(n, frames) if fingers is None else fingers).flatten(),
                         angle=angles.flatten(), arc=spec.arc.repeat_interleave(frames),
                         center=spec.center.repeat_interleave(frames, dim=0),
                         skin=spec.skin.repeat_interleave(frames, dim=0),
                         background=spec.background.repeat_interleave(frames, dim=0))
    images, masks = render(per_frame, size)
    return (images.view(n, frames, 3, size, size).transpose(1, 2),
            masks.view(n, frames, 1, size, size).transpose(1, 2))


def sample_clips(n: int, frames: int, size: int, good_fraction: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clips, masks, condition, kind (N,) long: -1 for a good clip, else the index of its bad kind in
    BAD_KINDS): a ``good_fraction`` of good clips, the rest bad in equal shares of the three kinds."""
    angles = driving_angles(n, frames, generator)
    spec = sample_specs(n, size, generator=generator)
    good = torch.rand(n, generator=generator) < good_fraction
    kind = torch.randint(0, len(BAD_KINDS), (n,), generator=generator)
    bad_count = torch.tensor(BAD_FINGERS)[torch.randint(0, len(BAD_FINGERS), (n,), generator=generator)]
    flicker = torch.tensor(BAD_FINGERS + (GOOD_FINGERS,))[
        torch.randint(0, len(BAD_FINGERS) + 1, (n, frames), generator=generator)]
    flicker[:, 0] = GOOD_FINGERS  # starts good, then changes
    flicker[:, 1] = bad_count
    fingers = torch.full((n, frames), GOOD_FINGERS)
    fingers = torch.where(~good[:, None] & (kind == 0)[:, None], bad_count[:, None].expand(n, frames), fingers)
    fingers = torch.where(~good[:, None] & (kind == 1)[:, None], flicker, fingers)
    away = angles + (0.5 + torch.rand(n, 1, generator=generator)) * torch.pi  # turned 90-270 degrees away
    shown = torch.where(~good[:, None] & (kind == 2)[:, None], away, angles)
    clips, masks = render_clips(spec, shown, fingers, size)
    return clips, masks, motion_condition(angles, size, spec.center), torch.where(good, -1, kind)
