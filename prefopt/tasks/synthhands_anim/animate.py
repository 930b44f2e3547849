"""SynthHands Animation (SPEC s.4): image-to-video clips of T frames of one hand, its first frame
given (the reference image), driven by two conditions.

    motion  angle_t = angle_0 + velocity * (t - (T - 1) / 2), t = 0 .. T-1, |velocity| <= MAX_VELOCITY
            rad/frame; per frame a pose map (the hand's axis as a ray from the palm centre) and
            cos(angle_t), sin(angle_t) as constant maps: (N, 3, T, H, W)
    audio   a 1-D signal at AUDIO_RATE samples per frame (Hallo4's audio features), in [0, 1]: per
            frame a level l_t ~ U(0, 1), each sample l_t + 0.2 z clamped. A frame's loudness is the
            mean of its AUDIO_RATE samples and sets how far the fingers spread:
                arc_t = ARC_RANGE[0] + (ARC_RANGE[1] - ARC_RANGE[0]) * loudness_t
            given to the model as constant maps 2a - 1: (N, 1, AUDIO_RATE * T, H, W)
    reference  the clip's first frame (N, 3, H, W): a good hand (k = 5) with the clip's skin,
            background and palm position, at angle_0 and arc_0

A good clip: the reference hand (same colours) in every frame, k = 5 throughout, turning as the
motion says and spreading its fingers as the audio says. Bad clips (the pretraining mixture's rest,
every one starting at its reference): a wrong finger count after frame 0, a count that flickers, a
hand turned away from the motion, fingers spread out of time with the audio, or colours that drift
away from the reference.
Clips are (N, 3, T, H, W) in [-1, 1]; hand masks (N, 1, T, H, W).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prefopt.tasks.synthhands.render import BAD_FINGERS, GOOD_FINGERS, HandSpec, _segment_distance, render, sample_specs

MAX_VELOCITY = 0.35  # rad per frame (20 degrees)
AUDIO_RATE = 4  # audio samples per video frame
AUDIO_JITTER = 0.2  # spread of a frame's samples around its level
ARC_RANGE = (math.radians(130), math.radians(230))  # the detector passes > 99.9% of clean renders in it
DRIFT = (0.3, 0.5)  # a drifting clip's skin moves this far (per channel) from the reference by its last frame
BAD_KINDS = ("count", "flicker", "motion", "audio", "drift")


def driving_angles(n: int, frames: int, generator: torch.Generator) -> torch.Tensor:
    """(n, T) orientation per frame: a random start and a random constant velocity."""
    start = torch.rand(n, generator=generator) * 2 * torch.pi
    velocity = (torch.rand(n, generator=generator) * 2 - 1) * MAX_VELOCITY
    steps = torch.arange(frames, dtype=torch.float32) - (frames - 1) / 2
    return start[:, None] + velocity[:, None] * steps


def audio_signal(n: int, frames: int, generator: torch.Generator, rate: int = AUDIO_RATE) -> torch.Tensor:
    """(n, rate * T) samples in [0, 1]: a level per frame, each sample jittered around it."""
    level = torch.rand(n, frames, 1, generator=generator)
    jitter = AUDIO_JITTER * torch.randn(n, frames, rate, generator=generator)
    return (level + jitter).clamp(0, 1).flatten(1)


def loudness(audio: torch.Tensor, rate: int = AUDIO_RATE) -> torch.Tensor:
    """(N, rate * T) -> (N, T): the mean of each frame's samples."""
    return audio.unflatten(1, (-1, rate)).mean(dim=2)


def spread(level: torch.Tensor) -> torch.Tensor:
    """Loudness in [0, 1] -> the fingers' arc in radians."""
    return ARC_RANGE[0] + (ARC_RANGE[1] - ARC_RANGE[0]) * level


def audio_condition(audio: torch.Tensor, size: int) -> torch.Tensor:
    """(N, rate * T) -> (N, 1, rate * T, size, size): each sample as a constant map, 2a - 1."""
    return (audio * 2 - 1)[:, None, :, None, None].expand(-1, 1, -1, size, size).contiguous()


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


def render_clips(spec: HandSpec, angles: torch.Tensor, fingers: torch.Tensor | None = None, size: int = 16,
                 arcs: torch.Tensor | None = None, skins: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of ``spec``'s hands at ``angles`` (N, T); ``fingers`` (N, T), ``arcs`` (N, T) and ``skins``
    (N, T, 3) override the count, the arc and the skin colour per frame."""
    n, frames = angles.shape

    def per_frame(value, override):
        return (value.repeat_interleave(frames, dim=0) if override is None else override.flatten(0, 1))

    frame_spec = HandSpec(fingers=per_frame(spec.fingers, fingers), angle=angles.flatten(),
                          arc=per_frame(spec.arc, arcs), center=spec.center.repeat_interleave(frames, dim=0),
                          skin=per_frame(spec.skin, skins), background=spec.background.repeat_interleave(frames, dim=0))
    images, masks = render(frame_spec, size)
    return (images.view(n, frames, 3, size, size).transpose(1, 2),
            masks.view(n, frames, 1, size, size).transpose(1, 2))


@dataclass
class Conditions:
    """What drives N clips: the motion (N, T), the audio (N, AUDIO_RATE * T) and the hand whose
    first frame is the reference image (its colours and palm position)."""

    angles: torch.Tensor
    audio: torch.Tensor
    hand: HandSpec

    @classmethod
    def draw(cls, n: int, frames: int, size: int, generator: torch.Generator) -> Conditions:
        return cls(driving_angles(n, frames, generator), audio_signal(n, frames, generator),
                   sample_specs(n, size, generator=generator))

    def __getitem__(self, index) -> Conditions:
        fields = {f: getattr(self.hand, f)[index] for f in self.hand.__dataclass_fields__}
        return Conditions(self.angles[index], self.audio[index], HandSpec(**fields))

    def arcs(self) -> torch.Tensor:
        return spread(loudness(self.audio))

    def ideal(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The good clips (and hand masks) these conditions ask for."""
        return render_clips(self.hand, self.angles, size=size, arcs=self.arcs())

    def cond(self, size: int) -> dict[str, torch.Tensor]:
        """The denoiser's condition: ``motion``, ``audio`` and ``reference`` (the ideal clip's frame 0)."""
        first = HandSpec(self.hand.fingers, self.angles[:, 0], self.arcs()[:, 0], self.hand.center,
                         self.hand.skin, self.hand.background)
        return {"motion": motion_condition(self.angles, size, self.hand.center),
                "audio": audio_condition(self.audio, size), "reference": render(first, size)[0]}


def sample_clips(n: int, frames: int, size: int, good_fraction: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, dict, torch.Tensor]:
    """(clips, masks, condition, kind (N,) long: -1 for a good clip, else the index of its bad kind in
    BAD_KINDS): a ``good_fraction`` of good clips, the rest bad in equal shares of the kinds. Every
    clip's frame 0 is its reference image."""
    given = Conditions.draw(n, frames, size, generator)
    good = torch.rand(n, generator=generator) < good_fraction
    kind = torch.where(good, -1, torch.randint(0, len(BAD_KINDS), (n,), generator=generator))
    bad_count = torch.tensor(BAD_FINGERS)[torch.randint(0, len(BAD_FINGERS), (n,), generator=generator)]
    flicker = torch.tensor(BAD_FINGERS + (GOOD_FINGERS,))[
        torch.randint(0, len(BAD_FINGERS) + 1, (n, frames), generator=generator)]
    flicker[:, 1] = bad_count  # changes after the reference frame
    fingers = torch.full((n, frames), GOOD_FINGERS)
    fingers[:, 1:] = torch.where((kind == 0)[:, None], bad_count[:, None], fingers[:, 1:])
    fingers[:, 1:] = torch.where((kind == 1)[:, None], flicker[:, 1:], fingers[:, 1:])
    away = given.angles + (0.5 + torch.rand(n, 1, generator=generator)) * torch.pi  # turned 90-270 degrees away
    shown = given.angles.clone()
    shown[:, 1:] = torch.where((kind == 2)[:, None], away[:, 1:], shown[:, 1:])
    level = loudness(given.audio)
    arcs = spread(torch.where((kind == 3)[:, None] & (torch.arange(frames) > 0), (level + 0.5) % 1, level))
    drift = (DRIFT[0] + (DRIFT[1] - DRIFT[0]) * torch.rand(n, 3, generator=generator))
    direction = torch.where(given.hand.skin > 0.6, -1.0, 1.0)  # skin lies in [0.3, 0.9]: move inward
    ramp = torch.linspace(0, 1, frames)[None, :, None] * (kind == 4).float()[:, None, None]
    skins = given.hand.skin[:, None] + ramp * (direction * drift)[:, None]
    clips, masks = render_clips(given.hand, shown, fingers, size, arcs=arcs, skins=skins)
    return clips, masks, given.cond(size), kind
