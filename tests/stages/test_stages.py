"""generate -> score -> curate -> train, end to end on a tiny random-init SD pipeline saved to disk,
for IPA (top samples) and GAPO (pairs with their reward gap); the curated counts are recomputed here
from the scores in the manifest."""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from commands import compose as _compose
from commands import rows as _rows

from prefopt.curate import curate
from prefopt.generate import generate
from prefopt.models import tiny_pipelines
from prefopt.score import score
from prefopt.training import train

PROMPTS, PER_PROMPT = 6, 3


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    pipeline = tiny_pipelines.build("sd15", root / "sd15")
    (root / "prompts.txt").write_text("".join(f"hand {i}\n" for i in range(PROMPTS)))
    manifest = generate(_compose("generate", f"model.path={pipeline}", f"data.prompts={root / 'prompts.txt'}",
                                 f"out={root / 'pool'}", f"data.samples_per_prompt={PER_PROMPT}", "steps=2",
                                 "height=32", "width=32", "batch_size=6"))
    counts = score(_compose("score", f"manifest={manifest}", "reward._target_=user_rewards.checksum"))
    assert counts == {"rows": PROMPTS * PER_PROMPT, "scored": PROMPTS * PER_PROMPT, "skipped": 0}
    return pipeline, manifest


def _train(pipeline, objective, data, run_dir):
    return train(_compose("config", f"objective={objective}", "model=sd15", f"model.path={pipeline}", "data=files",
                          f"data.path={data}", "data.image_size=32", "eval.num_samples=0", "trainer=smoke",
                          "trainer.max_steps=3", "trainer.batch_size=2", "logger=none", "lora.rank=4"), run_dir)


def test_score_is_resumable_and_refuses_another_reward(scored):
    from prefopt.errors import ConfigError

    _, manifest = scored
    again = score(_compose("score", f"manifest={manifest}", "reward._target_=user_rewards.checksum"))
    assert again == {"rows": PROMPTS * PER_PROMPT, "scored": 0, "skipped": PROMPTS * PER_PROMPT}
    with pytest.raises(ConfigError, match=r"samples.jsonl:1: scored by user_rewards.checksum#\w+, not "):
        score(_compose("score", f"manifest={manifest}", "reward._target_=user_rewards.checksum",
                       "+reward.levels=5"))


def test_generate_score_curate_train_gapo(scored, tmp_path, model_cache):
    pipeline, manifest = scored
    rows = _rows(manifest)
    assert {r["score"] for r in rows} <= {0.0, 0.5, 1.0}
    expected_pairs, expected_ties = [], 0
    for i in range(PROMPTS):
        group = [r for r in rows if r["prompt_index"] == i]
        for a, b in combinations(group, 2):
            if a["score"] == b["score"]:
                expected_ties += 1
            else:
                w, lo = (a, b) if a["score"] > b["score"] else (b, a)
                expected_pairs.append((w["path"], lo["path"], w["score"], lo["score"]))
    assert expected_pairs and expected_ties  # the fixture has both

    counts = curate(_compose("curate", f"manifest={manifest}", "method=gapo", "pairing=all"))
    assert counts["pairs"] == len(expected_pairs) and counts["dropped_ties"] == expected_ties
    assert counts["pairs"] + counts["dropped_ties"] == PROMPTS * math.comb(PER_PROMPT, 2)
    curated = _rows(manifest.parent / "gapo" / "train.jsonl")
    assert [("samples/" + Path(r["winner"]).name, "samples/" + Path(r["loser"]).name, r["reward_w"], r["reward_l"])
            for r in curated] == expected_pairs
    assert json.loads((manifest.parent / "gapo" / "counts.json").read_text()) == counts

    best_worst = curate(_compose("curate", f"manifest={manifest}", "method=dpo", "out=" + str(tmp_path / "bw")))
    spread = [max(g) > min(g) for g in ([r["score"] for r in rows if r["prompt_index"] == i] for i in range(PROMPTS))]
    assert (best_worst["pairs"], best_worst["dropped_ties"]) == (sum(spread), PROMPTS - sum(spread))

    summary = _train(pipeline, "gapo", manifest.parent / "gapo" / "train.jsonl", tmp_path / "run")
    assert summary["steps"] == 3 and np.isfinite(summary["loss"])
    assert (tmp_path / "run" / "final" / "pytorch_lora_weights.safetensors").is_file()


def test_generate_score_curate_train_ipa(scored, tmp_path, model_cache):
    pipeline, manifest = scored
    rows = _rows(manifest)
    counts = curate(_compose("curate", f"manifest={manifest}", "method=ipa", "fraction=0.25"))
    keep = math.ceil(0.25 * len(rows))
    order = sorted(range(len(rows)), key=lambda k: (-rows[k]["score"], k))
    assert counts == {"rows": len(rows), "unscored": 0, "kept": keep, "dropped": len(rows) - keep}
    curated = _rows(manifest.parent / "ipa" / "train.jsonl")
    assert ["samples/" + Path(r["winner"]).name for r in curated] == [rows[k]["path"] for k in order[:keep]]

    threshold = curate(_compose("curate", f"manifest={manifest}", "method=ipa", "threshold=1.0",
                                "out=" + str(tmp_path / "t")))
    assert threshold["kept"] == sum(r["score"] >= 1.0 for r in rows)

    summary = _train(pipeline, "ipa", manifest.parent / "ipa" / "train.jsonl", tmp_path / "run")
    assert summary["steps"] == 3 and np.isfinite(summary["loss"])
