"""Data parallel through accelerate: 2 CPU processes (``ACCELERATE_USE_CPU=1 accelerate launch
--multi_gpu --num_processes 2``) end with the weights of 1 process with the doubled batch.

Why they can agree: every process draws the noise and t of the whole global batch and keeps its
rows (NoiseProcess.noise ``shard``), the sampler gives process r the r-th half of the batch one
process would see, and DDP averages the per-process mean gradients, which is the global mean.
What remains is float summation order, which AdamW's m / sqrt(v) magnifies where a gradient is
near zero (LoRA's down matrices get an exactly zero gradient at step 1): measured after 3 steps at
lr 1e-3, 99.6% of weights within 1e-6 and the largest difference 2.3e-5 (dpo). Rank-specific noise
(the bug this guards against) measured: 99.9% of weights off by more than 1e-6, the largest 5.9e-3."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

COMMON = ["logger=none", "model=tiny", "data=renders", "data.num_samples=32", "eval.num_samples=0", "trainer=smoke",
          "trainer.max_steps=3", "trainer.log_every=1", "trainer.learning_rate=1e-3", "lora.enabled=true"]


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "PREFOPT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "ACCELERATE_USE_CPU": "1"}


@pytest.mark.parametrize("objective", ["dpo", "ipa"])
def test_two_processes_match_one_process_with_the_doubled_batch(objective, tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    assert accelerate, "accelerate's launcher is not installed"
    two = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "-m", "prefopt.train",
           *COMMON, f"objective={objective}", "trainer.batch_size=4"]  # the run dir: Hydra's default, agreed by the ranks
    one = [sys.executable, "-m", "prefopt.train", *COMMON, f"objective={objective}", "trainer.batch_size=8",
           f"hydra.run.dir={tmp_path / 'one'}"]
    for command in (one, two):
        result = subprocess.run(command, capture_output=True, text=True, env=_env(tmp_path), timeout=600, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs").glob("*/*")  # one run dir for both processes
    run_dir.rename(tmp_path / "two")
    a = load_file(tmp_path / "one" / "final" / "pytorch_lora_weights.safetensors")
    b = load_file(tmp_path / "two" / "final" / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys()
    differences = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    print(f"|one - two|: max {differences.max():.3g}, share above 1e-6 {(differences > 1e-6).float().mean():.4f}")
    assert differences.max() < 5e-5  # 5% of one step (lr 1e-3): Adam's m/sqrt(v) on near-zero gradients
    assert (differences > 1e-6).float().mean() < 0.01  # elsewhere: float summation order
    for row_one, row_two in zip(_metrics(tmp_path / "one"), _metrics(tmp_path / "two"), strict=True):
        assert row_one["loss"] == pytest.approx(row_two["loss"], rel=1e-4, abs=0)  # DPO: beta 500 times those weights
    up = [k for k in a if ".lora.up." in k or "lora_B" in k]
    assert min(float(a[k].abs().max()) for k in up) > 1e-4  # trained: the zero-initialized half moved


def test_processes_that_do_not_join_one_group_stop_with_the_remedy(tmp_path, model_cache, monkeypatch):
    """`accelerate launch --cpu --num_processes 2` (or an FSDP config on CPU) starts 2 lone copies
    that would each train alone into the same run dir; the launcher's WORLD_SIZE gives them away."""
    from hydra import compose, initialize_config_dir

    from prefopt.cli import to_config
    from prefopt.errors import ConfigError
    from prefopt.training import train

    monkeypatch.setenv("WORLD_SIZE", "2")
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parent.parent / "conf"), version_base="1.3"):
        cfg = to_config(compose("config", overrides=[*COMMON, "objective=dpo"]))
    with pytest.raises(ConfigError, match="started 2 processes but accelerate joined 1; on CPU use ACCELERATE_USE_CPU=1"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
