"""SynthHands Animation through the one training loop: every objective trains on image-to-video clips
with their motion, audio and reference conditions (model=tiny_video, random init), pairs share a
condition, and the evaluation reports each reward dimension with a 95% interval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from commands import compose

from prefopt.data import build_dataset
from prefopt.errors import ConfigError
from prefopt.models import build_model
from prefopt.tasks.synthhands_anim.data import pool_conditions
from prefopt.training import train

SMALL = ["model=tiny_video", "modulation.enabled=true", "modulation.audio=true", "data=synth_anim", "data.num_samples=16",
         "data.sample_steps=2", "eval.num_samples=8", "eval.steps=2", "trainer=smoke", "trainer.max_steps=3",
         "trainer.batch_size=4", "trainer.log_every=1", "lora.enabled=false", "logger=none"]


@pytest.mark.parametrize("objective", ["sft", "ipa", "dpo", "hgdpo", "gapo"])
def test_every_objective_trains_on_clips_and_is_evaluated_per_dimension(objective, tmp_path, model_cache, caplog):
    # a random-init model makes no good clip for IPA's strict pool: IPA reads rendered clips (anim_mix)
    # here, with hand-aware weighting that leaves the reference frame at weight 1
    data = ["data=anim_mix", "data.num_samples=16", "hand_aware.enabled=true"] if objective == "ipa" else []
    summary = train(compose("config", f"objective={objective}", *SMALL, *data), tmp_path / "run")
    assert summary["steps"] == 3 and np.isfinite(summary["loss"])
    # aligning a random-init model's pool is allowed, and said: the pretrained base is model=anim_base
    assert ("model=anim_base" in caplog.text) == (objective != "ipa")
    for who in ("base", "aligned"):
        result = json.loads((tmp_path / "run" / "eval" / f"{who}.json").read_text())
        assert result["num_samples"] == 8 and result["frames"] == 4
        for dim in ("appearance", "consistency", "motion", "faithfulness", "synchrony", "reward"):
            low, high = result[f"{dim}_ci95"]
            assert 0 <= result[dim] <= 1 and low <= result[dim] <= high
        assert (tmp_path / "run" / "eval" / f"{who}.png").is_file()


def test_pairs_share_their_condition_and_hgdpo_stages_keep_it(model_cache):
    config = compose("config", "objective=dpo", *SMALL, "data.num_samples=24", "data.clips_per_motion=3")
    model = build_model(config.model)
    given = pool_conditions(config.data)
    assert torch.equal(given.angles[0], given.angles[2]) and not torch.equal(given.angles[2], given.angles[3])
    assert torch.equal(given.audio[0], given.audio[2]) and torch.equal(given.hand.skin[0], given.hand.skin[2])
    pairs = build_dataset(config.data, paired=True, model=model)
    assert len(pairs) <= 8 and bool((pairs.fields["reward_w"] > pairs.fields["reward_l"]).all())
    pool = given.cond(16)
    for row in range(len(pairs)):  # a pair's condition is one of the pool's, whole
        matches = [i for i in range(len(given.angles)) if torch.equal(pool["motion"][i], pairs.cond["motion"][row])]
        assert matches and all(torch.equal(pool[key][matches[0]], pairs.cond[key][row]) for key in ("audio", "reference"))
    for stage in ("easy", "normal", "hard"):
        staged = build_dataset(config.data, paired=True, stage=stage, model=model)
        for key in ("motion", "audio", "reference"):
            assert torch.equal(staged.cond[key], pairs.cond[key])  # same losers, same conditions
        assert torch.equal(staged.fields["loser"], pairs.fields["loser"])
        if stage == "hard":  # the real winner starts at its reference image
            torch.testing.assert_close(staged.fields["winner"][:, :, 0], staged.cond["reference"])


def test_modulation_needs_a_motion_model():
    with pytest.raises(ConfigError, match="modulation.enabled: UNet2DModel takes no motion condition"):
        compose("config", "modulation.enabled=true")
    with pytest.raises(ConfigError, match=r"modulation.audio needs modulation.enabled=true"):
        compose("config", "model=tiny_video", "data=synth_anim", "modulation.audio=true")


def test_video_model_round_trips_and_modulation_starts_at_the_base(tmp_path, model_cache):
    from prefopt.models.video import MotionVideoModel

    config = compose("config", *SMALL)
    model = build_model(config.model).denoiser
    model.save_pretrained(tmp_path / "video")
    again = MotionVideoModel.from_pretrained(tmp_path / "video")
    sample, t = torch.randn(2, 3, 4, 16, 16), torch.tensor([100.0, 900.0])
    cond = {"motion": torch.randn(2, 3, 4, 16, 16), "audio": torch.randn(2, 1, 16, 16, 16),
            "reference": torch.randn(2, 3, 16, 16)}
    with torch.no_grad():
        assert torch.equal(model(sample, t, **cond).sample, again(sample, t, **cond).sample)
        # both modules are zero-initialized: at step 0 the model is the backbone on the clip and its reference
        assert torch.equal(model(sample, t, **cond).sample, model(sample, t, reference=cond["reference"]).sample)


def test_unpaired_objectives_learn_from_the_pools_top_fraction_by_reward(model_cache):
    from prefopt.tasks.synthhands_anim.data import scored_anim_pool

    config = compose("config", "objective=ipa", *SMALL, "data.top_fraction=0.25")
    model = build_model(config.model)
    clips, cond, scores = scored_anim_pool(config.data, model)
    kept = build_dataset(config.data, paired=False, model=model)
    best = sorted(range(16), key=lambda i: -float(scores.reward[i]))[:4]  # ceil(0.25 * 16)
    assert len(kept) == 4
    assert torch.equal(kept.fields["winner"], clips[sorted(best)])
    for key in ("motion", "audio", "reference"):
        assert torch.equal(kept.cond[key], cond[key][sorted(best)])
    assert kept.fields["mask_w"].shape == (4, 1, 4, 16, 16)  # the detected foreground, for hand-aware weighting
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
    assert result["frames"] == 4 and "motion_ci95" in result and "synchrony_ci95" in result
