"""Rewards as Hydra-instantiated callables: the built-ins, a user function, the weighted aggregate,
and one-line errors for rewards that break the signature."""

from __future__ import annotations

import pytest
import torch

from prefopt.errors import ConfigError
from prefopt.rewards import callables
from prefopt.tasks.synthhands.render import render, sample_specs
from prefopt.tasks.synthhands.reward import score


def test_weighted_aggregate_is_the_weighted_mean_of_its_dimensions():
    reward = callables.load({"_target_": "prefopt.rewards.callables.Weighted",
                             "dims": {"a": {"_target_": "user_rewards.checksum", "levels": 3},
                                      "b": {"_target_": "prefopt.rewards.callables.temporal_consistency"}},
                             "weights": {"a": 3.0, "b": 1.0}})
    video = torch.zeros(2, 3, 4, 8, 8)
    video[1, :, 1::2] = 0.5  # frames alternate 0 and 0.5: mean change 0.5 * 3/3 over [-1, 1] -> 1 - 0.25 / 2
    values = reward(video, ["", ""])
    pixels = ((video.double() + 1) * 127.5).round().flatten(1).sum(dim=1).long()
    a = (pixels % 3).float() / 2
    b = torch.tensor([1.0, 1 - (0.5 * 3 / 3) / 2])
    torch.testing.assert_close(values["a"], a)
    torch.testing.assert_close(values["b"], b)
    torch.testing.assert_close(values["score"], (3 * a + b) / 4)


def test_synth_hands_callable_is_the_graded_reward_and_averages_video_frames():
    fingers = torch.tensor([5, 5, 3, 5, 7, 2])
    images = render(sample_specs(6, 16, fingers=fingers, generator=torch.Generator().manual_seed(0)), 16)[0]
    expected = score(images).reward
    torch.testing.assert_close(callables.synth_hands(images, [""] * 6), expected)
    clip = torch.stack([images[:3], images[3:]], dim=2)  # (3, 3, 2, H, W): frames k and k + 3
    torch.testing.assert_close(callables.synth_hands(clip, [""] * 3), (expected[:3] + expected[3:]) / 2)


@pytest.mark.parametrize(("values", "message"), [
    (torch.tensor([0.5, 1.5]), r"reward: returned 1.5, rewards must be finite and in \[0, 1\]"),
    (torch.tensor([0.5, float("nan")]), "returned nan"),
    (torch.ones(3), r"returned shape \(3,\) for 2 samples, expected \(2,\)"),
])
def test_a_reward_outside_its_contract_is_one_line(values, message):
    with pytest.raises(ConfigError, match=message):
        callables.check(values, 2, "reward")


def test_bad_targets_and_weights_are_one_line():
    with pytest.raises(ConfigError, match=r"reward._target_: cannot import 'no.such.reward'"):
        callables.load({"_target_": "no.such.reward"})
    with pytest.raises(ConfigError, match=r"reward.weights.c: no such dimension"):
        callables.Weighted(dims={"a": {"_target_": "user_rewards.checksum"}}, weights={"c": 1.0})
