"""An independent check of the good-hand test: analysis by synthesis.

Every image is compared with a bank of renderer templates (finger count k in {3, ..., 7} plus five
fused fingers; orientation every ``ANGLE_STEP`` degrees; palm centre on a half-pixel grid over the
renderer's jitter range) by the Pearson correlation of its grey levels with the template's
coverage. The image passes when its best template is a separated five-finger hand and the
correlation reaches ``MIN_CORRELATION``.

It shares nothing with :mod:`prefopt.tasks.synthhands.detect` (no threshold, no distance transform, no ring, no
components): a stray blob, a missing or extra finger or a smeared stroke lowers the correlation or
moves the best template away from k = 5. ``README.md`` reports its agreement with the strict test.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from prefopt.tasks.synthhands.render import ARC_DEGREES, BAD_FINGERS, FUSED_ARC_DEGREES, GOOD_FINGERS, HandSpec, render

ANGLE_STEP = 5.0
CENTER_OFFSETS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # px around the image centre (the renderer jitters +-size/16)
MIN_CORRELATION = 0.9
FUSED = -1  # the template label of five fused fingers


@lru_cache(maxsize=4)
def templates(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit-norm centred templates (T, size * size), label (T,): finger count, FUSED for fused)."""
    kinds = [(k, ARC_DEGREES) for k in sorted((GOOD_FINGERS, *BAD_FINGERS))] + [(FUSED, FUSED_ARC_DEGREES)]
    angles = torch.deg2rad(torch.arange(0.0, 360.0, ANGLE_STEP))
    offsets = torch.tensor(CENTER_OFFSETS) * size / 16
    ky, kx = torch.meshgrid(offsets, offsets, indexing="ij")
    centers = torch.stack([kx.flatten(), ky.flatten()], dim=1) + (size - 1) / 2
    rows, labels = [], []
    for label, arc in kinds:
        a = angles.repeat_interleave(len(centers))
        c = centers.repeat(len(angles), 1)
        n = len(a)
        fingers = torch.full((n,), GOOD_FINGERS if label == FUSED else label)
        spec = HandSpec(fingers=fingers, angle=a, arc=torch.deg2rad(torch.tensor(arc)).expand(n), center=c,
                        skin=torch.ones(n, 3), background=-torch.ones(n, 3))
        _, mask = render(spec, size)
        rows.append(mask.flatten(1))
        labels.append(torch.full((n,), label))
    bank = torch.cat(rows)
    bank = bank - bank.mean(dim=1, keepdim=True)
    return bank / bank.norm(dim=1, keepdim=True), torch.cat(labels)


def best_template(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(label of the best-correlated template (N,), its correlation (N,)) for images (N, 3, H, W).

    The sign of the correlation is free (skin lighter or darker than the background)."""
    bank, labels = templates(images.shape[-1])
    grey = images.float().mean(dim=1).flatten(1)
    grey = grey - grey.mean(dim=1, keepdim=True)
    grey = grey / grey.norm(dim=1, keepdim=True).clamp_min(1e-8)
    correlation = (grey @ bank.T).abs()
    value, index = correlation.max(dim=1)
    return labels[index], value


def independent_good(images: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the best template is a separated five-finger hand with correlation >= MIN_CORRELATION."""
    label, value = best_template(images)
    return (label == GOOD_FINGERS) & (value >= MIN_CORRELATION)
