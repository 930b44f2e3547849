"""SynthHands Animation's numbers beyond the reward (prefopt/tasks/synthhands_anim/quality.py): the
temporal distance sees motion that the per-frame distance cannot, and the evaluator reports them all."""

from __future__ import annotations

import pytest
import torch

from prefopt.tasks.synthhands_anim.animate import Conditions
from prefopt.tasks.synthhands_anim.quality import clip_quality


def test_temporal_fd_sees_frames_out_of_order_that_per_frame_fd_does_not():
    given = Conditions.draw(256, 4, 16, torch.Generator().manual_seed(0))
    given.audio = torch.full_like(given.audio, 0.5)  # a 180-degree arc: the one the two judges were made for
    other = Conditions.draw(256, 4, 16, torch.Generator().manual_seed(1))  # other hands, the same motions and audio
    other.angles, other.audio = given.angles, given.audio
    reference, clips = given.ideal(16)[0], other.ideal(16)[0]
    in_order = clip_quality(clips, reference, seed=0, resamples=10)
    shuffled = clip_quality(clips[:, :, [2, 0, 3, 1]], reference, seed=0, resamples=10)  # the same frames
    assert shuffled["fd"] == pytest.approx(in_order["fd"], rel=1e-6)
    assert in_order["fd_temporal"] < 2.0 and shuffled["fd_temporal"] > 5 * in_order["fd_temporal"]
    assert in_order["classifier_rate"] > 0.95 and in_order["coverage"] > 0.7  # frames of a clip share colours


def test_the_clip_evaluator_reports_distance_judges_and_drift(tmp_path, model_cache):
    from commands import compose

    from prefopt.models import build_model
    from prefopt.tasks.synthhands_anim.evaluation import SynthHandsAnimEvaluator

    model = build_model(compose("config", "model=tiny_video", "modulation.enabled=true", "modulation.audio=true",
                                "data=synth_anim").model)
    evaluator = SynthHandsAnimEvaluator(num_samples=8, steps=2)
    result = evaluator.evaluate(model.denoiser, model.scheduler, "tiny", tmp_path)
    for key in ("fd", "fd_temporal", "diversity", "coverage", "classifier_rate", "independent_rate", "render_error"):
        assert key in result and result[key] >= 0, key
    assert result["fd_ci95"][0] <= result["fd_ci95"][1]
    assert "temporal FD" in evaluator.describe(result)
