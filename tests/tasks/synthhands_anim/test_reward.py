"""SynthHands Animation: rendered clips follow their driving motion, and the three-dimensional reward
tells good clips from each kind of bad clip."""

from __future__ import annotations

import torch

from prefopt.tasks.synthhands.render import sample_specs
from prefopt.tasks.synthhands_anim.animate import (
    MAX_VELOCITY,
    driving_angles,
    motion_condition,
    render_clips,
    sample_clips,
)
from prefopt.tasks.synthhands_anim.reward import MAX_ANGLE_ERROR, score_clips


def test_driving_motion_and_its_condition():
    angles = driving_angles(64, 5, torch.Generator().manual_seed(0))
    steps = angles.diff(dim=1)
    assert torch.allclose(steps, steps[:, :1].expand_as(steps), atol=1e-5)  # constant velocity
    assert steps.abs().max() <= MAX_VELOCITY + 1e-6
    cond = motion_condition(angles, 16)
    assert cond.shape == (64, 3, 5, 16, 16)
    torch.testing.assert_close(torch.atan2(cond[:, 2, :, 3, 4], cond[:, 1, :, 3, 4]),
                               torch.atan2(torch.sin(angles), torch.cos(angles)))
    # the pose map: lit along the ray from the centre (7.5, 7.5), dark behind it
    ahead = [(round(7.5 + 5 * torch.cos(a).item()), round(7.5 + 5 * torch.sin(a).item())) for a in angles[:, 0]]
    behind = [(round(7.5 - 5 * torch.cos(a).item()), round(7.5 - 5 * torch.sin(a).item())) for a in angles[:, 0]]
    assert all(cond[i, 0, 0, y, x] > -1 for i, (x, y) in enumerate(ahead))
    assert all(cond[i, 0, 0, y, x] == -1 for i, (x, y) in enumerate(behind))


def test_clips_render_each_frame_at_its_angle():
    spec = sample_specs(3, 16, generator=torch.Generator().manual_seed(1))
    angles = driving_angles(3, 4, torch.Generator().manual_seed(2))
    clips, masks = render_clips(spec, angles)
    assert clips.shape == (3, 3, 4, 16, 16) and masks.shape == (3, 1, 4, 16, 16)
    from prefopt.tasks.synthhands.render import render

    for t in range(4):  # frame t is the still render of the same hand at angle t
        frame_spec = sample_specs(3, 16, generator=torch.Generator().manual_seed(1))
        frame_spec.angle = angles[:, t]
        torch.testing.assert_close(clips[:, :, t], render(frame_spec, 16)[0])


def test_reward_passes_good_clips_and_fails_each_bad_kind():
    generator = torch.Generator().manual_seed(3)
    clips, _, cond, kinds = sample_clips(1200, 4, 16, 0.5, generator)
    good = kinds < 0
    scores = score_clips(clips, cond)
    assert scores.good[good].float().mean() >= 0.97
    assert scores.good[~good].float().mean() <= 0.03
    torch.testing.assert_close(scores.reward, (scores.appearance + scores.consistency + scores.motion) / 3)
    assert (scores.appearance[good] == 1).float().mean() >= 0.99
    assert (scores.angle_error[good] <= MAX_ANGLE_ERROR).float().mean() >= 0.99
    bad = ~good  # each bad kind fails on its own dimension
    assert scores.appearance[bad & (kinds == 0)].mean() < 0.95  # a wrong count in every frame
    assert scores.consistency[bad & (kinds == 1)].mean() < scores.consistency[good].mean() - 0.2  # flicker
    assert scores.motion[bad & (kinds == 2)].mean() < scores.motion[good].mean() - 0.2  # ignores the motion

