"""SynthHands Animation: rendered clips follow their driving motion and audio from their reference
frame, and the five-dimensional reward tells good clips from each kind of bad clip."""

from __future__ import annotations

import pytest
import torch

from prefopt.tasks.synthhands.render import sample_specs
from prefopt.tasks.synthhands_anim.animate import (
    BAD_KINDS,
    MAX_VELOCITY,
    driving_angles,
    motion_condition,
    render_clips,
    sample_clips,
)
from prefopt.tasks.synthhands_anim.reward import MAX_ANGLE_ERROR, MAX_ARC_ERROR, MAX_COLOUR_SHIFT, score_clips


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


def test_audio_sets_each_frames_spread_and_the_reference_is_the_clips_first_frame():
    import math

    from prefopt.tasks.synthhands_anim.animate import ARC_RANGE, AUDIO_RATE, Conditions, audio_condition

    given = Conditions.draw(16, 4, 16, torch.Generator().manual_seed(4))
    assert given.audio.shape == (16, 4 * AUDIO_RATE) and 0 <= given.audio.min() and given.audio.max() <= 1
    level = given.audio.view(16, 4, AUDIO_RATE).mean(dim=2)  # frame t's loudness: its 4 samples' mean
    torch.testing.assert_close(given.arcs(), ARC_RANGE[0] + (ARC_RANGE[1] - ARC_RANGE[0]) * level)
    assert math.degrees(ARC_RANGE[0]) == pytest.approx(130) and math.degrees(ARC_RANGE[1]) == pytest.approx(230)
    maps = audio_condition(given.audio, 16)
    assert maps.shape == (16, 1, 16, 16, 16) and torch.equal(maps[:, 0, :, 5, 9], given.audio * 2 - 1)
    cond = given.cond(16)
    ideal, _ = given.ideal(16)
    torch.testing.assert_close(cond["reference"], ideal[:, :, 0])  # the reference is frame 0 of the good clip
    clips, _, mixed, kinds = sample_clips(64, 4, 16, 0.5, torch.Generator().manual_seed(5))
    torch.testing.assert_close(clips[:, :, 0], mixed["reference"])  # every clip of the mix starts at its reference


def test_reward_passes_good_clips_and_fails_each_bad_kind_on_its_own_dimension():
    clips, _, cond, kinds = sample_clips(1500, 4, 16, 0.4, torch.Generator().manual_seed(3))
    good = kinds < 0
    scores = score_clips(clips, cond)
    assert scores.good[good].float().mean() >= 0.98
    assert scores.good[~good].float().mean() <= 0.01
    torch.testing.assert_close(scores.reward, (scores.appearance + scores.consistency + scores.motion
                                               + scores.faithfulness + scores.synchrony) / 5)
    assert (scores.appearance[good] == 1).float().mean() >= 0.99
    assert (scores.angle_error[good] <= MAX_ANGLE_ERROR).float().mean() >= 0.99
    assert (scores.arc_error[good] <= MAX_ARC_ERROR).float().mean() >= 0.99
    assert (scores.colour_shift[good] <= MAX_COLOUR_SHIFT).float().mean() >= 0.99
    bad = {name: ~good & (kinds == i) for i, name in enumerate(BAD_KINDS)}
    assert scores.appearance[bad["count"]].mean() < 0.95  # a wrong count after the reference frame
    assert scores.consistency[bad["flicker"]].mean() < scores.consistency[good].mean() - 0.2
    assert scores.motion[bad["motion"]].mean() < scores.motion[good].mean() - 0.2  # ignores the motion
    assert scores.synchrony[bad["audio"]].mean() < scores.synchrony[good].mean() - 0.2  # out of time with the audio
    assert scores.faithfulness[bad["drift"]].mean() < scores.faithfulness[good].mean() - 0.2  # colours drift
    for name in ("motion", "audio", "drift"):  # the other dimensions do not punish them
        assert scores.appearance[bad[name]].mean() > 0.99


def test_the_detected_arc_and_orientation_match_the_rendered_ones():
    """On clean still renders at arcs over the audio's range, read back through the ring (ring_pose)."""
    import math

    from prefopt.tasks.synthhands.render import render
    from prefopt.tasks.synthhands.reward import score
    from prefopt.tasks.synthhands_anim.reward import ring_pose

    spec = sample_specs(600, 16, generator=torch.Generator().manual_seed(6))
    spec.arc = torch.deg2rad(torch.linspace(130, 230, 600))
    detection = score(render(spec, 16)[0]).detection
    angle, arc, found = ring_pose(detection)
    assert found.all()
    turned = (torch.remainder(angle - spec.angle + math.pi, 2 * math.pi) - math.pi).abs()
    assert torch.quantile(turned, 0.99) < math.radians(20)
    assert torch.quantile((arc - spec.arc).abs(), 0.99) < MAX_ARC_ERROR
