"""The claim experiments (conf/experiment/claim_*.yaml) compose the arms they name, and
experiments/claims.py turns their sweeps into verdicts by its rule (recomputed by hand here)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
from commands import compose

ROOT = Path(__file__).resolve().parents[2]


def _claims():
    spec = importlib.util.spec_from_file_location("claims", ROOT / "experiments" / "claims.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["claims"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_each_claim_sweep_differs_only_where_its_claim_says():
    hard = compose("config", "experiment=claim_hgdpo_curriculum", "objective=hgdpo", "objective.stage_fractions=[0,0,1]")
    easy = compose("config", "experiment=claim_hgdpo_curriculum", "objective=hgdpo", "objective.stage_fractions=[1,0,0]")
    assert hard.objective.curriculum(600) == [("hard", 600)] and easy.objective.curriculum(600) == [("easy", 600)]
    assert hard.objective.stat_weight == easy.objective.stat_weight == 100.0  # the recipe's, in every arm
    on = compose("config", "experiment=claim_hand_aware", "objective=dpo", "hand_aware.enabled=true")
    off = compose("config", "experiment=claim_hand_aware", "objective=ipa", "hand_aware.enabled=false")
    assert on.hand_aware.enabled and on.hand_aware.weight == 1.5 and not off.hand_aware.enabled
    gapo, dpo = (compose("config", "experiment=claim_gapo_dpo", f"objective={o}") for o in ("gapo", "dpo"))
    assert (gapo.trainer.learning_rate, gapo.trainer.ema_decay) == (dpo.trainer.learning_rate, dpo.trainer.ema_decay) == (1e-4, 0.99)
    sft, dpo = (compose("config", "experiment=claim_dpo_sft", f"objective={o}") for o in ("sft", "dpo"))
    for cfg in (sft, dpo):
        assert (cfg.trainer.learning_rate, cfg.trainer.timestep_sampling, cfg.trainer.ema_decay) == (2e-4, "uniform", 0.0)
        assert not cfg.hand_aware.enabled and cfg.trainer.max_steps == 600 and cfg.data.num_samples == 1024


def _run(sweep: Path, name: str, overrides: list[str], seed: int, evaluation: dict) -> None:
    run = sweep / name
    (run / "eval").mkdir(parents=True)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in [f"seed={seed}", *overrides]))
    objective = overrides[0].split("=")[1]
    (run / "summary.json").write_text(json.dumps({"objective": objective, "seed": seed, "steps": 600, "wall_s": 1,
                                                  "reward_calls": 3072, "pairs": 0}))
    (run / "metrics.jsonl").write_text("")
    base = {"good_rate": 0.25, "good_rate_ci95": [0.2, 0.3], "mean_reward": 0.8, "mean_reward_ci95": [0.79, 0.81]}
    (run / "eval" / "base.json").write_text(json.dumps(base))
    (run / "eval" / "aligned.json").write_text(json.dumps({**base, **evaluation}))


def test_verdicts_follow_the_rule(tmp_path):
    claims = _claims()
    gapo = tmp_path / "gapo_dpo" / "2026-12-02_10-00-00"
    for seed, (gapo_rate, dpo_rate) in enumerate([(0.50, 0.44), (0.47, 0.43), (0.49, 0.44)]):
        _run(gapo, f"g{seed}", ["objective=gapo"], seed, {"good_rate": gapo_rate, "fd": 30.0, "classifier_rate": 0.5})
        _run(gapo, f"d{seed}", ["objective=dpo"], seed, {"good_rate": dpo_rate, "fd": 31.0, "classifier_rate": 0.5})
    curriculum = tmp_path / "hgdpo_curriculum" / "2026-12-02_10-00-00"
    for seed in range(3):
        for fractions, rate, fd in (("[1,1,1]", 0.50 + 0.01 * seed, 40.0 + seed), ("[0,0,1]", 0.40, 20.0),
                                    ("[1,0,0]", 0.45, 60.0 + seed)):
            _run(curriculum, f"{fractions}{seed}", ["objective=hgdpo", f"objective.stage_fractions={fractions}"], seed,
                 {"good_rate": rate, "fd": fd, "classifier_rate": 0.5})
    found = claims.arms(curriculum)
    assert set(found) == {f"hgdpo objective.stage_fractions={f}" for f in ("[1,1,1]", "[0,0,1]", "[1,0,0]")}
    by_text = {claim.text: claim for claim in claims.CLAIMS}
    differences = [0.06, 0.04, 0.05]  # GAPO minus DPO per seed: mean 0.05, sd 0.01
    mean, low, high, seeds = claims.paired(claims.arms(gapo), by_text["GAPO beats DPO at equal steps and pairs"], "good_rate")
    half = 4.303 * 0.01 / math.sqrt(3)
    assert (mean, low, high, seeds) == pytest.approx((sum(differences) / 3, 0.05 - half, 0.05 + half, 3))
    assert claims.verdict(claims.arms(gapo), by_text["GAPO beats DPO at equal steps and pairs"])[0] == "reproduced"
    hard = by_text["HG-DPO's curriculum beats one-stage real-winner DPO (hard stage only)"]
    easy = by_text["HG-DPO's curriculum beats the easy stage only"]
    assert claims.verdict(found, hard)[0] == "mixed"  # higher rate, but farther from the renders (FD 41 vs 20)
    assert "FD -21.00 [-23.48, -18.52] contradicted" in claims.verdict(found, hard)[1]  # every seed 20 + seed farther
    hand = tmp_path / "hand_aware" / "2026-12-02_10-00-00"
    for seed, (on, off) in enumerate([(0.45, 0.30), (0.40, 0.42), (0.30, 0.41)]):  # swept booleans: Hydra writes True/False
        _run(hand, f"on{seed}", ["objective=ipa", "hand_aware.enabled=True"], seed, {"good_rate": on, "fd": 1.0})
        _run(hand, f"off{seed}", ["objective=ipa", "hand_aware.enabled=False"], seed, {"good_rate": off, "fd": 1.0})
    name, why = claims.verdict(claims.arms(hand), by_text["Hand-aware local optimization helps the hands (IPA)"])
    assert name == "not reproduced" and "inconclusive: interval spans +0" in why  # +15, -2, -11 points
    assert claims.verdict(found, easy)[0] == "reproduced"  # higher rate and closer (FD 41 vs 61)
    table = claims.table(tmp_path)
    assert "| DPO beats SFT on the winners of the same pairs | - | - | - | 0 | not run |" in table
    assert table.count("`experiment=claim_") == len(claims.CLAIMS)
