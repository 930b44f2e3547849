"""Vectorized renderer of SynthHands images: a palm disc and k straight fingers radiating from it
over an arc, on a plain background. Good hand: k = 5, fingers separated.

Geometry scales with the image side ``size`` (16 px: palm radius 2.5 px, 4-px fingers 1 px wide over a
180-degree arc; SPEC s.4 measured 160 degrees, which the detector counts less reliably at k = 7). Coverage is anti-aliased (a pixel's coverage falls
linearly over one pixel at the shape's edge). Images are (N, 3, size, size) in [-1, 1]; the hand
mask is (N, 1, size, size) in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_FINGERS = 7
GOOD_FINGERS = 5
BAD_FINGERS = (3, 4, 6, 7)
ARC_DEGREES = 180.0
FUSED_ARC_DEGREES = 40.0


@dataclass
class HandSpec:
    """Per-image parameters, each a tensor with N rows."""

    fingers: torch.Tensor  # (N,) long, finger count k
    angle: torch.Tensor  # (N,) hand orientation, radians (direction of the middle of the arc)
    arc: torch.Tensor  # (N,) angle spanned by the fingers, radians
    center: torch.Tensor  # (N, 2) palm centre (x, y) in pixels
    skin: torch.Tensor  # (N, 3) in [-1, 1]
    background: torch.Tensor  # (N, 3) in [-1, 1]

    def __len__(self) -> int:
        return self.fingers.shape[0]


def sample_specs(n: int, size: int = 16, fingers: torch.Tensor | None = None, fused: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> HandSpec:
    """Random poses and colours. ``fused`` rows get a narrow arc (fingers merge: a bad hand)."""
    g = generator
    if fingers is None:
        fingers = torch.full((n,), GOOD_FINGERS, dtype=torch.long)
    angle = torch.rand(n, generator=g) * 2 * torch.pi
    arc = torch.deg2rad(torch.full((n,), ARC_DEGREES))
    if fused is not None:
        arc = torch.where(fused, torch.deg2rad(torch.tensor(FUSED_ARC_DEGREES)), arc)
    jitter = (torch.rand(n, 2, generator=g) - 0.5) * 0.125 * size
    center = torch.full((n, 2), (size - 1) / 2) + jitter
    skin = torch.rand(n, 3, generator=g) * 0.6 + 0.3  # light, in [0.3, 0.9]
    background = -(torch.rand(n, 3, generator=g) * 0.6 + 0.3)  # dark, in [-0.9, -0.3]
    return HandSpec(fingers=fingers.long(), angle=angle, arc=arc, center=center, skin=skin, background=background)


def _segment_distance(px, py, ax, ay, bx, by):
    """Distance from points (px, py) to segments a-b (all broadcast)."""
    dx, dy = bx - ax, by - ay
    length2 = (dx * dx + dy * dy).clamp_min(1e-12)
    h = (((px - ax) * dx + (py - ay) * dy) / length2).clamp(0, 1)
    return torch.hypot(px - ax - h * dx, py - ay - h * dy)


def render(spec: HandSpec, size: int = 16, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(image (N, 3, size, size) in [-1, 1], hand mask (N, 1, size, size) in [0, 1])."""
    if len(spec) > chunk:
        parts = [_render(HandSpec(*(getattr(spec, f)[i:i + chunk] for f in spec.__dataclass_fields__)), size)
                 for i in range(0, len(spec), chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return _render(spec, size)


def _render(spec: HandSpec, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    palm_radius = 2.5 * size / 16
    finger_length = 4.0 * size / 16
    finger_width = max(1.0, size / 16)
    coords = torch.arange(size, dtype=torch.float32)
    py, px = torch.meshgrid(coords, coords, indexing="ij")  # (H, W)
    cx = spec.center[:, 0].view(-1, 1, 1)
    cy = spec.center[:, 1].view(-1, 1, 1)
    palm = (palm_radius + 0.5 - torch.hypot(px - cx, py - cy)).clamp(0, 1)  # (N, H, W)

    slot = torch.arange(MAX_FINGERS, dtype=torch.float32)  # (F,)
    k = spec.fingers.float().view(-1, 1)
    spread = torch.where(k > 1, slot / (k - 1).clamp_min(1) - 0.5, torch.zeros_like(slot))  # (N, F)
    theta = spec.angle.view(-1, 1) + spec.arc.view(-1, 1) * spread
    cos, sin = torch.cos(theta)[..., None, None], torch.sin(theta)[..., None, None]  # (N, F, 1, 1)
    cx, cy = cx[:, None], cy[:, None]
    ax, ay = cx + 0.8 * palm_radius * cos, cy + 0.8 * palm_radius * sin
    bx, by = cx + (palm_radius + finger_length) * cos, cy + (palm_radius + finger_length) * sin
    distance = _segment_distance(px, py, ax, ay, bx, by)  # (N, F, H, W)
    finger = (finger_width / 2 + 0.5 - distance).clamp(0, 1)
    present = (slot.view(1, -1) < k).float()[..., None, None]
    mask = torch.maximum(palm, (finger * present).amax(dim=1)).unsqueeze(1)  # (N, 1, H, W)

    skin = spec.skin[:, :, None, None]
    background = spec.background[:, :, None, None]
    image = background + (skin - background) * mask
    return image, mask
