"""The comparison: a multirun sweep keeps wandb runs apart, ``experiment=compare`` runs every
objective, and ``prefopt.report`` recomputes its numbers from the runs' files."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefopt.report import seeds_ci, t975, write_report

FAST = ["model=tiny", "data=renders", "eval.num_samples=0", "lora.enabled=true", "trainer=smoke",
        "trainer.max_steps=3", "trainer.log_every=1", "trainer.batch_size=4", "data.num_samples=16"]


def _env(tmp_path):
    return {**os.environ, "PREFOPT_CACHE": os.environ.get("PREFOPT_CACHE", str(tmp_path / "cache")),
            "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}


def _wandb_records(run_dir: Path) -> tuple[dict, list[dict]]:
    """(run record fields, history rows) of the one offline wandb run under ``run_dir``."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    store = datastore.DataStore()
    store.open_for_scan(str(path))
    run, history = {}, []
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = {"group": record.run.run_group, "job_type": record.run.job_type, "tags": list(record.run.tags)}
        elif kind == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
    return run, history


def test_a_two_job_multirun_keeps_wandb_runs_apart(tmp_path):
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "prefopt.train", "-m", "objective=ipa,dpo", *FAST, "logger=wandb",
               "logger.mode=offline", f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = {}
    for job in ("0", "1"):
        run, history = _wandb_records(sweep / job)
        seen[run["job_type"]] = run
        assert run["group"] == "sweep"  # the sweep's folder: one group for the whole multirun
        assert run["job_type"] in run["tags"] and "data=renders" in run["tags"]
        logged = [row for row in history if "loss" in row]
        local = [json.loads(line) for line in (sweep / job / "metrics.jsonl").read_text().splitlines()]
        assert [row["_step"] for row in logged] == [1, 2, 3]  # this run's steps, once each
        assert [row["loss"] for row in logged] == [row["loss"] for row in local if "loss" in row]
    assert set(seen) == {"ipa", "dpo"}


def test_the_compare_experiment_runs_every_objective_and_reports(tmp_path):
    """CI's version of ``python -m prefopt.train -m experiment=compare``: one seed, a few steps."""
    sweep = tmp_path / "compare"
    command = [sys.executable, "-m", "prefopt.train", "-m", "experiment=compare", "hydra.sweeper.params.seed=0",
               "trainer.max_steps=4", "trainer.rounds=2", "trainer.batch_size=8", "data.num_samples=64",
               "data.sample_steps=8", "eval.num_samples=32", "eval.steps=8", f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = {json.loads(p.read_text())["objective"]: json.loads(p.read_text()) for p in sweep.rglob("summary.json")}
    assert set(summaries) == {"sft", "ipa", "dpo", "gapo", "hgdpo"}
    assert {s["reward_calls"] for s in summaries.values()} == {128}  # matched: 2 rounds x 64 scored samples
    assert summaries["ipa"]["pairs"] == summaries["sft"]["pairs"] == 0 and summaries["dpo"]["pairs"] > 0
    report = subprocess.run([sys.executable, "-m", "prefopt.report", str(sweep)], capture_output=True, text=True,
                            env=_env(tmp_path), timeout=300)
    assert report.returncode == 0, report.stderr
    out = sweep / "report"
    for name in ("report.md", "report.html", "report.json", "reward_vs_step.png", "samples.png"):
        assert (out / name).stat().st_size > 0
    table = json.loads((out / "report.json").read_text())["table"]
    assert list(table) == ["base", "sft", "ipa", "dpo", "gapo", "hgdpo"]
    for name, summary in summaries.items():
        assert table[name]["good_rate"] == summary["eval"]["aligned"]["good_rate"]


def _fake_run(root: Path, objective: str, seed: int, rate: float, reward: float, base_rate: float = 0.25) -> None:
    run = root / f"{objective}_{seed}"
    (run / "eval").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"objective": objective, "seed": seed, "steps": 600,
                                                  "wall_s": 100.0 + seed, "reward_calls": 3072,
                                                  "pairs": 0 if objective == "ipa" else 2000 + seed}))
    (run / "eval" / "aligned.json").write_text(json.dumps({"good_rate": rate, "good_rate_ci95": [rate - 0.04, rate + 0.04],
                                                           "mean_reward": reward, "mean_reward_ci95": [reward - 0.01, reward + 0.01]}))
    (run / "eval" / "base.json").write_text(json.dumps({"good_rate": base_rate, "good_rate_ci95": [0.21, 0.29],
                                                        "mean_reward": 0.8, "mean_reward_ci95": [0.79, 0.81]}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "pool/good_rate": base_rate}) + "\n"
                                       + json.dumps({"step": 300, "pool/good_rate": (base_rate + rate) / 2}) + "\n")


def test_report_numbers_are_recomputed_from_the_run_files(tmp_path):
    rates = {"ipa": [0.30, 0.36, 0.33], "dpo": [0.40, 0.38, 0.45]}
    rewards = {"ipa": [0.81, 0.83, 0.82], "dpo": [0.85, 0.84, 0.86]}
    for objective in rates:
        for seed in range(3):
            _fake_run(tmp_path, objective, seed, rates[objective][seed], rewards[objective][seed])
    _fake_run(tmp_path, "sft", 0, 0.31, 0.80)
    table = json.loads((write_report(tmp_path) / "report.json").read_text())["table"]
    for objective, values in rates.items():
        mean = sum(values) / 3
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
        row = table[objective]
        assert row["good_rate"] == pytest.approx(mean)
        assert row["good_rate_ci95"] == pytest.approx([mean - 4.303 * sd / math.sqrt(3), mean + 4.303 * sd / math.sqrt(3)])
        assert row["gain"] == pytest.approx(mean - 0.25)
        assert row["mean_reward"] == pytest.approx(sum(rewards[objective]) / 3)
        assert row["wall_s"] == pytest.approx(101.0) and row["reward_calls"] == 3072
    assert table["ipa"]["pairs"] == 0 and table["dpo"]["pairs"] == pytest.approx(2001)
    assert table["sft"]["good_rate_ci95"] == pytest.approx([0.27, 0.35])  # one seed: the run's own interval
    assert table["base"]["good_rate"] == 0.25 and table["base"]["seeds"] == 1
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| dpo | 3 | 41.0 [" in markdown and "| +16.0 |" in markdown
    curves = json.loads((tmp_path / "report" / "report.json").read_text())["reward_vs_step"]
    assert curves["dpo"][-1] == [600, pytest.approx(0.41)] and curves["dpo"][0] == [0, 0.25]


def test_t_quantiles_match_the_t_distribution():
    """t_{0.975, df} from the table against a numerical integral of the Student t density."""
    def cdf(x: float, df: int, steps: int = 20000) -> float:
        norm = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
        h = x / steps
        area = sum((1 if i in (0, steps) else 4 if i % 2 else 2) * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2)
                   for i in range(steps + 1)) * h / 3
        return 0.5 + norm * area

    for df in (1, 2, 3, 5, 10, 30, 60):
        assert cdf(t975(df), df) == pytest.approx(0.975, abs=3e-4 if df <= 30 else 1e-3)
    assert seeds_ci([0.5])[0] == 0.5 and math.isnan(seeds_ci([0.5])[1])
    assert seeds_ci([1.0, 3.0]) == pytest.approx((2.0, 2.0 - 12.706, 2.0 + 12.706))
