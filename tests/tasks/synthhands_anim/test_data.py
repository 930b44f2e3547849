"""SynthHands Animation through the one training loop: every objective trains on clips with their
motion condition (model=tiny_video, random init), pairs share a motion, and the evaluation reports
each reward dimension with a 95% interval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from commands import compose

from prefopt.data import build_dataset
from prefopt.errors import ConfigError
from prefopt.models import build_model
from prefopt.tasks.synthhands_anim.data import motions
from prefopt.training import train

SMALL = ["model=tiny_video", "modulation.enabled=true", "data=synth_anim", "data.num_samples=16",
         "data.sample_steps=2", "eval.num_samples=8", "eval.steps=2", "trainer=smoke", "trainer.max_steps=3",
         "trainer.batch_size=4", "trainer.log_every=1", "lora.enabled=false", "logger=none"]


@pytest.mark.parametrize("objective", ["ipa", "dpo", "hgdpo", "gapo"])
def test_every_objective_trains_on_clips_and_is_evaluated_per_dimension(objective, tmp_path, model_cache, caplog):
    # a random-init model makes no good clip for IPA's pool: IPA reads rendered clips (anim_mix) here
    data = ["data=anim_mix", "data.num_samples=16"] if objective == "ipa" else []
    summary = train(compose("config", f"objective={objective}", *SMALL, *data), tmp_path / "run")
    assert summary["steps"] == 3 and np.isfinite(summary["loss"])
    # aligning a random-init model's pool is allowed, and said: the pretrained base is model=anim_base
    assert ("model=anim_base" in caplog.text) == (objective != "ipa")
    for who in ("base", "aligned"):
        result = json.loads((tmp_path / "run" / "eval" / f"{who}.json").read_text())
        assert result["num_samples"] == 8 and result["frames"] == 4
        for dim in ("appearance", "consistency", "motion", "reward"):
            low, high = result[f"{dim}_ci95"]
            assert 0 <= result[dim] <= 1 and low <= result[dim] <= high
        assert (tmp_path / "run" / "eval" / f"{who}.png").is_file()


def test_pairs_share_their_motion_and_hgdpo_stages_keep_it(model_cache):
    config = compose("config", "objective=dpo", *SMALL, "data.num_samples=24", "data.clips_per_motion=3")
    model = build_model(config.model)
    angles = motions(config.data)
    assert torch.equal(angles[0], angles[2]) and not torch.equal(angles[2], angles[3])  # 3 clips per motion
    pairs = build_dataset(config.data, paired=True, model=model)
    assert len(pairs) <= 8 and bool((pairs.fields["reward_w"] > pairs.fields["reward_l"]).all())
    from prefopt.tasks.synthhands_anim.animate import motion_condition

    by_motion = {tuple(motion_condition(a[None], 16)[0, 1:, :, 0, 0].flatten().tolist()) for a in angles}
    for row in range(len(pairs)):
        assert tuple(pairs.cond["motion"][row, 1:, :, 0, 0].flatten().tolist()) in by_motion
    for stage in ("easy", "normal", "hard"):
        staged = build_dataset(config.data, paired=True, stage=stage, model=model)
        assert torch.equal(staged.cond["motion"], pairs.cond["motion"])  # same losers, same motions
        assert torch.equal(staged.fields["loser"], pairs.fields["loser"])


def test_modulation_needs_a_motion_model():
    with pytest.raises(ConfigError, match="modulation.enabled: UNet2DModel takes no motion condition"):
        compose("config", "modulation.enabled=true")


def test_video_model_round_trips_and_modulation_starts_at_the_base(tmp_path, model_cache):
    from prefopt.models.video import MotionVideoModel

    config = compose("config", *SMALL)
    model = build_model(config.model).denoiser
    model.save_pretrained(tmp_path / "video")
    again = MotionVideoModel.from_pretrained(tmp_path / "video")
    sample, t = torch.randn(2, 3, 4, 16, 16), torch.tensor([100.0, 900.0])
    motion = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(sample, t, motion=motion).sample, again(sample, t, motion=motion).sample)
        assert torch.equal(model(sample, t, motion=motion).sample, model(sample, t).sample)  # zero-init at step 0


def test_unpaired_objectives_learn_from_the_pools_top_fraction_by_reward(model_cache):
    from prefopt.tasks.synthhands_anim.data import scored_anim_pool

    config = compose("config", "objective=ipa", *SMALL, "data.top_fraction=0.25")
    model = build_model(config.model)
    clips, cond, scores = scored_anim_pool(config.data, model)
    kept = build_dataset(config.data, paired=False, model=model)
    best = sorted(range(16), key=lambda i: -float(scores.reward[i]))[:4]  # ceil(0.25 * 16)
    assert len(kept) == 4
    assert torch.equal(kept.fields["winner"], clips[sorted(best)])
    assert torch.equal(kept.cond["motion"], cond[sorted(best)])
    strict = compose("config", "objective=ipa", *SMALL, "data.top_fraction=null")
    if not bool(scores.good.any()):  # a random-init model makes no good clip: the strict rule refuses
        with pytest.raises(ConfigError, match="no good clip to learn from"):
            build_dataset(strict.data, paired=False, model=model)


def test_evaluate_picks_the_runs_own_evaluator_for_a_video_run(tmp_path, model_cache):
    """``prefopt.evaluate run=<a video run>`` scores clips with the run's evaluator, not as images."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PREFOPT_CACHE": str(model_cache), "HF_HUB_OFFLINE": "1"}
    trained = subprocess.run([sys.executable, "-m", "prefopt.train", "objective=dpo", *SMALL, "hydra.run.dir=run"],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    (tmp_path / "run" / "eval" / "aligned.json").unlink()
    done = subprocess.run([sys.executable, "-m", "prefopt.evaluate", "run=run", "eval.num_samples=8", "eval.steps=2"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "aligned: good clips" in done.stdout
    result = json.loads((tmp_path / "run" / "eval" / "aligned.json").read_text())
    assert result["frames"] == 4 and "motion_ci95" in result
