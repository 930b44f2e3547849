"""Renderer determinism and the detector's accuracy, checked against the renderer's ground truth and
against hand-drawn images that do not use the renderer."""

from __future__ import annotations

import math

import pytest
import torch

from prefopt.tasks.synthhands.detect import components, detect
from prefopt.tasks.synthhands.render import render, sample_specs


def _renders(seed: int, fingers: torch.Tensor, size: int = 16):
    spec = sample_specs(len(fingers), size, fingers=fingers, generator=torch.Generator().manual_seed(seed))
    return render(spec, size)


def test_renderer_is_deterministic_per_seed():
    k = torch.tensor([3, 4, 5, 6, 7] * 4)
    a, mask_a = _renders(7, k)
    b, mask_b = _renders(7, k)
    c, _ = _renders(8, k)
    assert torch.equal(a, b) and torch.equal(mask_a, mask_b)
    assert not torch.equal(a, c)
    assert a.shape == (20, 3, 16, 16) and mask_a.shape == (20, 1, 16, 16)
    assert a.min() >= -1 and a.max() <= 1 and mask_a.min() >= 0 and mask_a.max() <= 1


def test_render_in_chunks_equals_render_at_once():
    spec = sample_specs(10, 16, fingers=torch.arange(10) % 5 + 3, generator=torch.Generator().manual_seed(0))
    whole, _ = render(spec, 16)
    chunked, _ = render(spec, 16, chunk=3)
    assert torch.equal(whole, chunked)


@pytest.mark.parametrize("k", [3, 4, 5, 6, 7])
def test_detector_counts_clean_renders(k):
    images, _ = _renders(100 + k, torch.full((300,), k))
    accuracy = (detect(images).fingers == k).float().mean().item()
    assert accuracy >= 0.95, f"k={k}: {accuracy:.3f}"


def _drawn_hand(k: int, size: int = 16, palm: float = 2.6, length: float = 7.0, arc_deg: float = 180.0,
                angle: float = 0.3) -> torch.Tensor:
    """A binary hand drawn point by point (not with the renderer): disc + k thick rays."""
    image = -torch.ones(3, size, size)
    c = (size - 1) / 2
    for y in range(size):
        for x in range(size):
            on = math.hypot(x - c, y - c) <= palm
            for i in range(k):
                theta = angle + math.radians(arc_deg) * (i / (k - 1) - 0.5)
                along = (x - c) * math.cos(theta) + (y - c) * math.sin(theta)
                across = -(x - c) * math.sin(theta) + (y - c) * math.cos(theta)
                on |= 0 <= along <= length and abs(across) <= 0.5
            if on:
                image[:, y, x] = 0.8
    return image


@pytest.mark.parametrize("k", [3, 5, 7])
def test_detector_counts_hand_drawn_fingers(k):
    d = detect(_drawn_hand(k)[None])
    assert d.fingers.item() == k
    assert d.components.item() == 1 and d.stray.item() == 0


def test_components_of_hand_made_masks():
    mask = torch.zeros(3, 8, 8, dtype=torch.bool)
    mask[0, 1:3, 1:3] = True  # one block
    mask[1, 0, 0] = mask[1, 7, 7] = mask[1, 4, 4] = True  # three isolated pixels
    mask[2, 2, 2] = mask[2, 3, 3] = mask[2, 4, 4] = True  # a diagonal: one 8-connected component
    count, labels = components(mask)
    assert count.tolist() == [1, 3, 1]
    assert (labels[~mask] == -1).all()


def test_stray_pixel_is_found_and_blank_image_has_no_hand():
    hand = _drawn_hand(5)
    hand[:, 0, 15] = 0.8  # a speck in the corner, away from the hand
    d = detect(torch.stack([hand, -torch.ones(3, 16, 16)]))
    assert d.stray.tolist()[0] == 1 and d.components.tolist()[0] == 2
    assert d.fingers.tolist()[1] == 0 and d.mask[1].sum() == 0
