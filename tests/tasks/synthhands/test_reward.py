"""The strict good-hand test, the graded reward and the independent template check on known good
and bad renders."""

from __future__ import annotations

import torch

from prefopt.tasks.synthhands.check import independent_good
from prefopt.tasks.synthhands.render import render, sample_specs
from prefopt.tasks.synthhands.reward import FAIL_SCALE, score


def _renders(seed, fingers, fused=None):
    spec = sample_specs(len(fingers), 16, fingers=fingers, fused=fused, generator=torch.Generator().manual_seed(seed))
    return render(spec, 16)[0]


def test_clean_good_renders_pass_both_tests_with_reward_one():
    images = _renders(0, torch.full((200,), 5))
    s = score(images)
    assert s.good.float().mean() >= 0.98
    assert torch.all(s.reward[s.good] == 1)
    assert independent_good(images).float().mean() >= 0.98


def test_bad_renders_fail_and_score_below_every_good_one():
    fingers = torch.tensor([3, 4, 6, 7] * 50 + [5] * 50)
    fused = torch.tensor([False] * 200 + [True] * 50)
    images = _renders(1, fingers, fused)
    s = score(images)
    assert not s.good.any()
    assert (s.reward <= FAIL_SCALE).all() and (s.reward >= 0).all()
    assert not independent_good(images).any()
    # the graded reward orders finger counts: one finger off scores above three fingers off on average
    off_by_one = s.reward[(fingers == 4) | (fingers == 6)].mean()
    off_by_two = s.reward[(fingers == 3) | (fingers == 7)].mean()
    assert off_by_one > off_by_two


def test_stray_pixels_and_noise_fail_the_strict_test():
    images = _renders(2, torch.full((20,), 5))
    speck = images.clone()
    speck[:, :, 0, 0] = speck[:, :, 0, 1]  # background everywhere first ...
    speck[:, :, 0, 0] = 0.9  # ... then one bright pixel in the corner
    noisy = (images + 0.6 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert not score(speck).good.any()
    assert score(noisy).good.float().mean() < 0.2
    assert (score(noisy).reward < 1).float().mean() > 0.8
