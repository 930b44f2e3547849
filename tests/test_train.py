"""End to end: every objective trains through the one loop and writes checkpoint + metrics.jsonl;
bad command lines fail fast with one line naming the key."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from prefopt.cli import to_config
from prefopt.training import train

CONF = str(Path(__file__).resolve().parent.parent / "conf")
FAST = ["logger=none", "model=tiny", "data=renders", "eval.num_samples=0", "lora.enabled=true", "trainer=smoke",
        "trainer.max_steps=3", "trainer.log_every=1", "trainer.batch_size=4", "data.num_samples=16"]


def _run(tmp_path, model_cache, *overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=[*FAST, *overrides])
    return train(to_config(cfg), tmp_path), tmp_path


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("objective", ["ipa", "dpo", "hgdpo", "gapo", "sft"])
def test_every_objective_trains_and_writes_checkpoint_and_metrics(tmp_path, model_cache, objective):
    summary, run_dir = _run(tmp_path, model_cache, f"objective={objective}")
    assert summary["steps"] == 3
    rows = _metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["loss"] == r["loss"] for r in rows)  # finite, not NaN
    assert (run_dir / "final" / "pytorch_lora_weights.safetensors").exists()
    if objective != "sft":
        assert "implicit_acc" in rows[0] and "reward_margin" in rows[0]
    if objective == "hgdpo":
        assert [r["stage"] for r in rows] == ["easy", "normal", "hard"]
    # throughput counts every image through the policy: 3 steps x 4 (pairs: x 2)
    images = 3 * 4 * (1 if objective in ("ipa", "sft") else 2)
    assert summary["images_per_s"] * summary["train_s"] == pytest.approx(images)
    assert 0 < summary["train_s"] <= summary["wall_s"]


@pytest.mark.parametrize("objective", ["ipa", "dpo", "hgdpo", "gapo", "sft"])
def test_hand_aware_weighting_runs_with_every_objective(tmp_path, model_cache, objective):
    _, run_dir = _run(tmp_path, model_cache, f"objective={objective}", "hand_aware.enabled=true", "hand_aware.dilate=1")
    rows = _metrics(run_dir)
    assert len(rows) == 3
    # SynthHands renders carry masks; the policy's error is logged inside and outside the hand
    assert all(r["err_in_hand"] > 0 and r["err_out_hand"] > 0 for r in rows)


def test_hand_aware_with_lambda_one_changes_nothing(tmp_path, model_cache):
    _, plain = _run(tmp_path / "plain", model_cache, "objective=dpo")
    _, weighted = _run(tmp_path / "weighted", model_cache, "objective=dpo", "hand_aware.enabled=true", "hand_aware.lambda=1")
    assert [r["loss"] for r in _metrics(plain)] == [r["loss"] for r in _metrics(weighted)]
    _, emphasis = _run(tmp_path / "emphasis", model_cache, "objective=dpo", "hand_aware.enabled=true")
    assert [r["loss"] for r in _metrics(plain)] != [r["loss"] for r in _metrics(emphasis)]


def test_full_finetune_with_flow_model_saves_full_weights(tmp_path, model_cache):
    _, run_dir = _run(tmp_path, model_cache, "objective=dpo", "model=tiny_flow", "lora.enabled=false",
                      "trainer.timestep_sampling=logit_normal")
    from diffusers import UNet2DModel

    UNet2DModel.from_pretrained(run_dir / "final")  # loads back through the real path


def test_hgdpo_previous_stage_reference(tmp_path, model_cache):
    summary, run_dir = _run(tmp_path, model_cache, "objective=hgdpo", "objective.reference=previous_stage",
                            "lora.enabled=false", "trainer.max_steps=6", "trainer.learning_rate=1e-3")
    rows = _metrics(run_dir)
    assert summary["steps"] == 6
    assert [r["stage"] for r in rows] == ["easy"] * 2 + ["normal"] * 2 + ["hard"] * 2
    # the first step of a stage starts from a reference equal to the policy: errors match exactly
    for first in (rows[2], rows[4]):
        assert first["policy_err_w"] == pytest.approx(first["ref_err_w"], abs=1e-6)
    assert rows[3]["policy_err_w"] != pytest.approx(rows[3]["ref_err_w"], abs=1e-6)


def test_previous_stage_with_lora_and_empty_batches_are_one_line_errors(tmp_path, model_cache):
    from prefopt.errors import ConfigError

    with pytest.raises(ConfigError, match="lora.enabled=false"):
        _run(tmp_path, model_cache, "objective=hgdpo", "objective.reference=previous_stage")
    with pytest.raises(ConfigError, match="no full batch"):
        _run(tmp_path, model_cache, "objective=dpo", "data.num_samples=3")


def test_non_enumerable_sweeps_are_left_to_hydra():
    from prefopt.cli import _jobs

    assert _jobs(["objective=glob(*)", "objective.beta=interval(1,2)", "seed=1,2"]) == [["seed=1"], ["seed=2"]]


def test_a_recipe_specializes_one_objective_on_one_benchmark():
    """conf/recipe/synth_<objective>.yaml applies to data=synth and that objective only (synth_sft.yaml
    is IPA's recipe for its control SFT); key=value and ~recipe win."""
    def picked(*overrides):
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            cfg = compose("config", overrides=list(overrides))
        return cfg.trainer.timestep_sampling, cfg.trainer.learning_rate, cfg.hand_aware.enabled, cfg.hand_aware["lambda"]

    assert picked("objective=ipa") == ("logit_normal", 1e-4, True, 1.5)
    assert picked("objective=sft") == picked("objective=ipa")
    assert picked("objective=dpo") == picked("objective=hgdpo") == ("uniform", 2e-4, False, 10.0)
    assert picked("objective=gapo") == ("uniform", 1e-4, False, 10.0)
    assert picked("objective=ipa", "data=renders")[2:] == (False, 10.0)
    assert picked("objective=ipa", "hand_aware.lambda=3", "trainer.learning_rate=2e-4") == ("logit_normal", 2e-4, True, 3.0)
    assert picked("objective=ipa", "~recipe") == ("uniform", 2e-4, False, 10.0)


def _cli(*args, tmp_path=None, env_extra=None, module="prefopt.train"):
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    return done, time.perf_counter() - started


@pytest.mark.parametrize("argument, key", [("objective=nope", "objective=nope"), ("objective.beta=abc", "objective.beta"),
                                           ("objective.beta=-1", "objective.beta"),
                                           ("trainer.mixed_precision=fp8", "trainer.mixed_precision"),
                                           ("trainer.mode_scale=2", "trainer.mode_scale"),
                                           ("trainer.compile=fast", "trainer.compile"),
                                           ("trainer.logit_std=0", "trainer.logit_std")])
def test_bad_config_fails_fast_with_one_line(tmp_path, argument, key):
    done, seconds = _cli(argument, tmp_path=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], done.stderr
    assert "Traceback" not in done.stderr and seconds < 10
    assert not (tmp_path / "outputs").exists()  # nothing was started


def test_sweep_is_validated_before_any_job_runs(tmp_path):
    done, _ = _cli("-m", "objective=ipa,dpo", "objective.beta=0", tmp_path=tmp_path)
    assert done.returncode == 2 and "objective.beta" in done.stderr
    assert not (tmp_path / "multirun").exists()


def test_cli_run_with_wandb_offline(tmp_path, model_cache):
    done, _ = _cli("objective=ipa", *[a for a in FAST if a != "logger=none"], "hydra.run.dir=run",
                   tmp_path=tmp_path, env_extra={"PREFOPT_CACHE": str(model_cache), "WANDB_SILENT": "true"})
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = tmp_path / "run"
    assert len(_metrics(run_dir)) == 3
    assert list((run_dir / "wandb").glob("offline-run-*"))
    assert (run_dir / "final" / "pytorch_lora_weights.safetensors").exists()


def test_gradient_accumulation_and_bf16_autocast(tmp_path, model_cache):
    summary, run_dir = _run(tmp_path, model_cache, "objective=gapo", "trainer.gradient_accumulation_steps=2",
                            "trainer.mixed_precision=bf16", "trainer.max_steps=2")
    assert summary["steps"] == 2  # optimizer steps, each of 2 micro-batches
    assert [r["step"] for r in _metrics(run_dir)] == [1, 2]


def test_default_synth_run_ends_by_evaluating_base_and_aligned(tmp_path, model_cache):
    """The embedded default (shipped base model, a scored pool of its samples), shrunk; then
    ``prefopt.evaluate`` reloads the run's LoRA and scores it on the same seeds."""
    small = ["data.num_samples=64", "data.sample_steps=10", "eval.num_samples=16", "eval.steps=10"]
    done, _ = _cli("objective=dpo", "logger=none", "trainer.max_steps=3", "trainer.batch_size=4", *small,
                   "hydra.run.dir=run", tmp_path=tmp_path, env_extra={"PREFOPT_CACHE": str(model_cache)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "base: good hands" in done.stdout and "aligned: good hands" in done.stdout, done.stdout
    run_dir = tmp_path / "run"
    aligned = json.loads((run_dir / "eval" / "aligned.json").read_text())
    assert aligned["num_samples"] == 16 and (run_dir / "eval" / "aligned.png").is_file()
    assert (run_dir / "eval" / "base.json").is_file()
    again, _ = _cli("run=run", "eval.num_samples=16", "eval.steps=10", tmp_path=tmp_path, module="prefopt.evaluate",
                    env_extra={"PREFOPT_CACHE": str(model_cache)})
    assert again.returncode == 0, again.stderr[-2000:]
    reloaded = json.loads((run_dir / "eval" / "aligned.json").read_text())
    assert reloaded["good_rate"] == aligned["good_rate"] and reloaded["mean_reward"] == pytest.approx(aligned["mean_reward"])


def test_rounds_cut_the_curriculum_into_segments():
    from prefopt.objectives import HGDPO, IPA
    from prefopt.training.plan import plan

    def schedule(objective, total, rounds=1):
        return [(s.round, s.stage, s.steps) for s in plan(objective, total, rounds)]

    # stages of 3 steps each; rounds end after steps 4 (round(4.5) = 4) and 9
    assert schedule(HGDPO(), 9, rounds=2) == [(0, "easy", 3), (0, "normal", 1), (1, "normal", 2), (1, "hard", 3)]
    assert schedule(IPA(), 10, rounds=3) == [(0, None, 3), (1, None, 4), (2, None, 3)]
    assert schedule(IPA(), 10) == [(0, None, 10)]


def test_pretrain_exports_a_loadable_diffusers_folder(tmp_path, model_cache):
    done, _ = _cli("trainer.max_steps=2", "trainer.batch_size=8", "data.num_samples=64", "hydra.run.dir=run",
                   "export=exported", tmp_path=tmp_path, module="prefopt.pretrain",
                   env_extra={"PREFOPT_CACHE": str(model_cache)})
    assert done.returncode == 0, done.stderr[-2000:]
    exported = tmp_path / "exported"
    record = json.loads((exported / "pretrain.json").read_text())
    assert record["steps"] == 2 and record["seed"] == 0 and "export=exported" in record["command"]
    assert record["evaluation"]["num_samples"] == 512
    from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DModel

    UNet2DModel.from_pretrained(exported)
    FlowMatchEulerDiscreteScheduler.from_pretrained(exported, subfolder="scheduler")


@pytest.mark.parametrize("lora", [True, False])
def test_compiled_denoiser_trains_to_the_eager_weights(tmp_path, model_cache, lora):
    """trainer.compile goes through accelerate's dynamo_backend: the LoRA reference toggles the
    adapters under the compiled policy (a second graph), a full fine-tune compiles its frozen copy;
    the saved weights carry no compile prefix. aot_eager traces the same graphs as inductor without
    generating code (fast on CPU)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    options = ["objective=dpo", f"lora.enabled={lora}"]
    _run(tmp_path / "eager", model_cache, *options)
    torch._dynamo.reset()
    counters.clear()
    summary, _ = _run(tmp_path / "compiled", model_cache, *options, "trainer.compile=aot_eager")
    assert summary["steps"] == 3
    assert counters["stats"]["unique_graphs"] == 2  # policy + reference, no graph break
    eager, compiled = (_final_weights(tmp_path / name / "final", lora) for name in ("eager", "compiled"))
    assert eager.keys() == compiled.keys()
    for key in eager:
        assert (eager[key] - compiled[key]).abs().max() < 1e-5, key
    assert [r["loss"] for r in _metrics(tmp_path / "eager")] == pytest.approx(
        [r["loss"] for r in _metrics(tmp_path / "compiled")], rel=1e-4)


def test_compiled_run_resumes_eager_to_the_same_weights(tmp_path, model_cache):
    """A checkpoint of a compiled run loads into an eager one (and the run ends where an
    uninterrupted eager run ends): the checkpointed state has no compile wrapper in its keys."""
    _run(tmp_path / "whole", model_cache, "objective=dpo", "trainer.max_steps=4")
    _run(tmp_path / "split", model_cache, "objective=dpo", "trainer.max_steps=2", "trainer.checkpoint_every=2",
         "trainer.compile=aot_eager")
    summary, _ = _run(tmp_path / "split", model_cache, "objective=dpo", "trainer.max_steps=4", "trainer.resume=auto")
    assert summary["steps"] == 4 and summary["train_s"] > 0
    whole, split = (_final_weights(tmp_path / name / "final", True) for name in ("whole", "split"))
    for key in whole:
        assert (whole[key] - split[key]).abs().max() < 1e-5, key


def _final_weights(final_dir: Path, lora: bool) -> dict:
    from safetensors.torch import load_file

    return load_file(final_dir / ("pytorch_lora_weights.safetensors" if lora else "diffusion_pytorch_model.safetensors"))
