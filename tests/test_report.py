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

from prefopt.evaluation.stats import seeds_ci, t975
from prefopt.report import write_report

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


BASE_QUALITY = {"independent_rate": 0.2, "classifier_rate": 0.4, "fd": 100.0, "fd_ci95": [90.0, 110.0],
                "diversity": 15.0, "coverage": 0.9, "render_error": 0.10}


def _fake_run(root: Path, objective: str, seed: int, rate: float, reward: float, base_rate: float = 0.25,
              quality: dict | None = None) -> None:
    run = root / f"{objective}_{seed}"
    (run / "eval").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"objective": objective, "seed": seed, "steps": 600,
                                                  "wall_s": 100.0 + seed, "reward_calls": 3072,
                                                  "pairs": 0 if objective == "ipa" else 2000 + seed}))
    (run / "eval" / "aligned.json").write_text(json.dumps({"good_rate": rate, "good_rate_ci95": [rate - 0.04, rate + 0.04],
                                                           "mean_reward": reward, "mean_reward_ci95": [reward - 0.01, reward + 0.01],
                                                           **(quality or {})}))
    (run / "eval" / "base.json").write_text(json.dumps({"good_rate": base_rate, "good_rate_ci95": [0.21, 0.29],
                                                        "mean_reward": 0.8, "mean_reward_ci95": [0.79, 0.81],
                                                        **(BASE_QUALITY if quality else {})}))
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


def test_the_report_shows_judges_distance_diversity_drift_and_flags_a_reward_that_outruns_its_judges(tmp_path):
    """IPA's good-hand rate doubles (+100% of base) while its judges rise 10-20%: flagged. DPO's judges
    rise as much as its reward (+60%): not flagged. The numbers are recomputed by hand."""
    ipa_judges = [(0.22, 0.44), (0.24, 0.46), (0.22, 0.48)]  # (template, classifier) per seed
    for seed, (template, classifier) in enumerate(ipa_judges):
        _fake_run(tmp_path, "ipa", seed, 0.50, 0.9, quality={
            "independent_rate": template, "classifier_rate": classifier, "fd": 20.0 + seed, "fd_ci95": [18.0, 25.0],
            "diversity": 12.0 - seed, "coverage": 0.8, "render_error": 0.11 + 0.01 * seed})
    for seed, gain in enumerate([0.5, 0.6, 0.7]):
        _fake_run(tmp_path, "dpo", seed, 0.25 * (1 + gain), 0.9, quality={
            "independent_rate": 0.2 * (1 + gain), "classifier_rate": 0.4 * (1 + gain), "fd": 50.0, "fd_ci95": [45.0, 55.0],
            "diversity": 14.0, "coverage": 0.9, "render_error": 0.10})
    out = write_report(tmp_path)
    table = json.loads((out / "report.json").read_text())["table"]
    ipa, dpo, base = table["ipa"]["quality"], table["dpo"]["quality"], table["base"]["quality"]
    half = 4.303 / math.sqrt(3)  # t_{0.975, 2} * sd 1 / sqrt(3 seeds)
    assert ipa["fd"] == pytest.approx(21.0) and ipa["fd_ci95"] == pytest.approx([21 - half, 21 + half])
    assert ipa["diversity"] == pytest.approx(11.0) and ipa["coverage"] == pytest.approx(0.8)
    assert ipa["drift"] == pytest.approx(0.02) and ipa["independent_rate"] == pytest.approx(0.68 / 3)
    assert base["fd"] == 100.0 and base["fd_ci95"] == [90.0, 110.0] and base["drift"] == 0.0  # one base: its own interval
    differences = [1.0 - (t / 0.2 - 1) for t, _ in ipa_judges]  # reward +100% of base minus the template's gain
    mean = sum(differences) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2)
    template = ipa["reward_minus_judge"]["independent_rate"]
    assert template["difference"] == pytest.approx(mean) and template["spread"] == pytest.approx(sd)
    assert template["flagged"] and ipa["reward_minus_judge"]["classifier_rate"]["flagged"]
    for judge in ("independent_rate", "classifier_rate"):
        assert dpo["reward_minus_judge"][judge]["difference"] == pytest.approx(0.0, abs=1e-12)
        assert not dpo["reward_minus_judge"][judge]["flagged"]
    markdown = (out / "report.md").read_text()
    assert "## Beyond the reward" in markdown and "| FD to renders |" in markdown and "FLAG" in markdown
    assert "| ipa | 50.0 [" in markdown and "| 22.7 [" in markdown and "![reward against FD](pareto.png)" in markdown
    pareto = json.loads((out / "report.json").read_text())["pareto"]
    assert pareto["base"] == [[100.0, 0.25]] and pareto["ipa"] == [[20.0, 0.5], [21.0, 0.5], [22.0, 0.5]]
    assert (out / "pareto.png").stat().st_size > 0 and "FLAG" in (out / "report.html").read_text()


def test_a_video_sweep_reports_the_clip_reward_the_same_columns_and_each_dimension(tmp_path):
    clip = {"frames": 4, "fd_temporal": 150.0, "fd_temporal_ci95": [140.0, 160.0], "dimensions": ["motion", "synchrony"],
            "motion_ci95": [0.0, 1.0], "synchrony_ci95": [0.0, 1.0]}
    for seed in range(2):
        run = tmp_path / f"gapo_{seed}"
        (run / "eval").mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"objective": "gapo", "seed": seed, "steps": 300, "wall_s": 1.0,
                                                      "reward_calls": 1536, "pairs": 768}))
        (run / "metrics.jsonl").write_text("")
        aligned = {**clip, "good_rate": 0.0, "good_rate_ci95": [0.0, 0.01], "reward": 0.59 + 0.01 * seed,
                   "reward_ci95": [0.58, 0.60], **BASE_QUALITY, "fd": 30.0 + seed, "fd_temporal": 100.0,
                   "motion": 0.8 + 0.1 * seed, "synchrony": 0.7}
        base = {**clip, "good_rate": 0.0, "good_rate_ci95": [0.0, 0.01], "reward": 0.53, "reward_ci95": [0.52, 0.54],
                **BASE_QUALITY, "fd": 40.0, "motion": 0.6, "synchrony": 0.75}
        (run / "eval" / "aligned.json").write_text(json.dumps(aligned))
        (run / "eval" / "base.json").write_text(json.dumps(base))
    out = write_report(tmp_path)
    table = json.loads((out / "report.json").read_text())["table"]
    assert table["gapo"]["mean_reward"] == pytest.approx(0.595) and table["base"]["mean_reward"] == 0.53
    assert table["gapo"]["quality"]["fd_temporal"] == 100.0 and table["gapo"]["quality"]["fd"] == pytest.approx(30.5)
    gain = table["gapo"]["quality"]["reward_minus_judge"]["classifier_rate"]
    assert gain["difference"] == pytest.approx(0.595 / 0.53 - 1)  # the judges stayed at the base's
    motion = table["gapo"]["dimensions"]["motion"]  # seeds 0.8 and 0.9: mean 0.85, sd 0.0707, t(1) = 12.706
    half = 12.706 * math.sqrt(0.005) / math.sqrt(2)
    assert motion["mean"] == pytest.approx(0.85) and motion["ci95"] == pytest.approx([0.85 - half, 0.85 + half], abs=1e-3)
    assert motion["gain"] == pytest.approx(0.25) and table["gapo"]["dimensions"]["synchrony"]["gain"] == pytest.approx(-0.05)
    assert table["base"]["dimensions"]["motion"]["ci95"] == [0.0, 1.0]  # one base: its own interval
    markdown = (out / "report.md").read_text()
    assert "reward: mean clip reward" in markdown and "| temporal FD |" in markdown and "| gapo | 0.595 [" in markdown
    assert "## Per reward dimension" in markdown and "(+0.250)" in markdown and "good-clip rate %" in markdown
    assert (out / "pareto.png").is_file()


def test_runs_that_differ_by_an_override_are_separate_arms(tmp_path):
    """A claim's sweep (hand-aware on and off): one row per arm, named by the override that varies."""
    for enabled, rate in (("true", 0.45), ("false", 0.40)):
        for seed in range(2):
            _fake_run(tmp_path / enabled, "ipa", seed, rate + 0.01 * seed, 0.85)
            hydra = tmp_path / enabled / f"ipa_{seed}" / ".hydra"
            hydra.mkdir()
            (hydra / "overrides.yaml").write_text(f"- seed={seed}\n- objective=ipa\n- hand_aware.enabled={enabled}\n"
                                                  "- trainer.max_steps=600\n")
    table = json.loads((write_report(tmp_path) / "report.json").read_text())["table"]
    assert list(table) == ["base", "ipa hand_aware.enabled=false", "ipa hand_aware.enabled=true"]
    assert table["ipa hand_aware.enabled=true"]["good_rate"] == pytest.approx(0.455)
    assert table["ipa hand_aware.enabled=false"]["seeds"] == 2
