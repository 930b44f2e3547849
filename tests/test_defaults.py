"""Real use decides the defaults: a real model on your data gets its papers' settings and a LoRA
recipe for SD-scale models; the SynthHands benchmarks' settings apply only when their data is chosen."""

from __future__ import annotations

import pytest
from commands import compose

from prefopt.errors import ConfigError

PAPER_BETA = {"dpo": 5000.0, "gapo": 5000.0, "hgdpo": 5000.0, "ipa": 600.0}  # SPEC-methods.md
REAL = {"sd15": ["data.image_size=512"], "sdxl": ["data.image_size=1024"],
        "animatediff": ["data.num_frames=16", "data.image_size=256"],
        "wan": ["data.num_frames=33", "data.image_size=480"], "sd3": ["data.image_size=1024"],
        "flux": ["data.image_size=1024"], "cogvideox": ["data.num_frames=49", "data.image_size=480"],
        "wan_i2v": ["data.num_frames=81", "data.image_size=480"]}


@pytest.mark.parametrize("family", sorted(REAL))
@pytest.mark.parametrize("objective", ["dpo", "gapo", "hgdpo", "ipa", "sft"])
def test_a_real_model_on_your_data_takes_the_papers_settings(family, objective):
    cfg = compose("config", f"objective={objective}", f"model={family}", f"model.path=/models/{family}", "data=files",
                  "data.path=pairs.jsonl", *REAL[family])
    assert getattr(cfg.objective, "beta", None) == PAPER_BETA.get(objective)
    if objective == "hgdpo":
        assert cfg.objective.stat_weight == 1.0 and list(cfg.objective.stage_fractions) == pytest.approx([1 / 3] * 3)
    trainer = cfg.trainer
    assert trainer.rounds == 1 and trainer.ema_decay == 0
    assert trainer.learning_rate == 1e-5 and trainer.warmup_steps == 200 and trainer.lr_scheduler == "constant_with_warmup"
    assert (trainer.batch_size, trainer.gradient_accumulation_steps, trainer.max_steps) == (4, 4, 2000)
    assert cfg.lora.enabled and cfg.lora.rank == 8 and cfg.model.gradient_checkpointing
    assert cfg.eval.evaluator is None and cfg.data.builder == "prefopt.data.files.build_files"


# today's SynthHands values (README before this change): beta 500 for the paired objectives, HG-DPO's
# statistics weight 100, 600 steps at batch 32 in 3 rounds, lr 2e-4 (IPA, SFT and GAPO 1e-4 with EMA 0.99),
# IPA's noisy t and hand weighting, all weights trained, the SynthHands evaluation.
SYNTH = {"sft": (None, 1e-4, 0.99, "logit_normal", True), "ipa": (600.0, 1e-4, 0.99, "logit_normal", True),
         "dpo": (500.0, 2e-4, 0.0, "uniform", False), "gapo": (500.0, 1e-4, 0.99, "uniform", False),
         "hgdpo": (500.0, 2e-4, 0.0, "uniform", False)}


@pytest.mark.parametrize("objective", sorted(SYNTH))
def test_the_embedded_default_keeps_the_synthhands_settings(objective):
    cfg = compose("config", f"objective={objective}")
    beta, lr, ema, sampling, hand_aware = SYNTH[objective]
    assert getattr(cfg.objective, "beta", None) == beta
    assert (cfg.trainer.learning_rate, cfg.trainer.ema_decay, cfg.trainer.timestep_sampling) == (lr, ema, sampling)
    assert (cfg.trainer.max_steps, cfg.trainer.batch_size, cfg.trainer.rounds) == (600, 32, 3)
    assert (cfg.trainer.gradient_accumulation_steps, cfg.trainer.warmup_steps) == (1, 0)
    assert cfg.hand_aware.enabled == hand_aware and not cfg.lora.enabled
    assert (cfg.model.name, cfg.data.name, cfg.data.num_samples) == ("base", "synth", 1024)
    assert cfg.eval.evaluator.endswith("SynthHandsEvaluator")
    if objective == "hgdpo":
        assert cfg.objective.stat_weight == 100.0


@pytest.mark.parametrize("objective", ["dpo", "gapo", "hgdpo", "ipa", "sft"])
def test_the_video_benchmark_brings_its_model_trainer_and_evaluator(objective):
    cfg = compose("config", "data=synth_anim", f"objective={objective}")
    unpaired = objective in ("ipa", "sft")  # IPA's recipe (and SFT's, the same): conf/recipe/synth_anim_ipa.yaml
    assert (cfg.model.name, cfg.trainer.max_steps, cfg.trainer.batch_size, cfg.trainer.rounds) == ("anim_base", 150, 16, 3)
    assert cfg.trainer.learning_rate == (1e-4 if unpaired else 5e-5) and cfg.data.num_samples == 256
    assert (cfg.hand_aware.enabled, cfg.hand_aware.reference_frame) == (unpaired, unpaired)
    if objective != "sft":
        assert cfg.objective.beta == (600.0 if objective == "ipa" else 500.0)
    assert cfg.eval.evaluator.endswith("SynthHandsAnimEvaluator")
    assert cfg.eval.options == {"frames": 4, "size": 16} and cfg.eval.num_samples == 256
    assert not cfg.lora.enabled


def test_rounds_on_data_the_model_did_not_make_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"^trainer.rounds=3: data=files is not made by the model"):
        compose("config", "objective=dpo", "data=files", "data.path=pairs.jsonl", "trainer.rounds=3")
    assert compose("config", "trainer.rounds=5").trainer.rounds == 5  # data=synth: each round re-samples


def test_the_settings_line_names_what_matters():
    from prefopt.training.setup import settings_line

    cfg = compose("config", "objective=dpo", "model=sd15", "model.path=/models/sd15", "data=files",
                  "data.path=pairs.jsonl", "trainer.mixed_precision=bf16")
    assert settings_line(cfg, processes=2) == ("prefopt: dpo β=5000 | lr 1e-05 | 2000 steps | effective batch 32 pairs "
                                               "| 1 round | LoRA rank 8 | precision bf16 | model sd15 | data files")
