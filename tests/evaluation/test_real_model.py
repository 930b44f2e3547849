"""A real model's path end to end on tiny random-init folders: an SD3 pipeline -> prefopt.generate ->
prefopt.score with two judges -> prefopt.curate -> DPO for 3 steps -> prefopt.evaluate with the
adapter against the base: the win-rate table recomputed here from the per-sample scores, and the grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny_judges
import torch
from commands import compose
from commands import rows as read_rows
from omegaconf import OmegaConf

from prefopt.errors import ConfigError
from prefopt.models import tiny_pipelines

PROMPTS = ["a hand waving", "two hands", "a fist", "an open palm"]
SIZE = 32


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    prompts = root / "prompts.txt"
    prompts.write_text("".join(p + "\n" for p in PROMPTS))
    return {"root": root, "sd3": tiny_pipelines.build("sd3", root / "sd3"), "judge": tiny_judges.clip_folder(root / "clip"),
            "prompts": prompts}


def _evaluate_overrides(folders, adapter):
    return ["model=sd3", f"model.path={folders['sd3']}", f"adapter={adapter}", f"prompts={folders['prompts']}",
            "judges=[pickscore,clip_score]", f"judge_paths.pickscore={folders['judge']}",
            f"judge_paths.clip_score={folders['judge']}", "sampling.samples_per_prompt=2", "sampling.steps=2",
            f"sampling.height={SIZE}", f"sampling.width={SIZE}"]


def test_generate_score_curate_train_and_evaluate_against_the_base(folders, model_cache, tmp_path):
    from prefopt.curate import curate
    from prefopt.evaluate import against_base
    from prefopt.generate import generate
    from prefopt.rewards.judges import PickScore
    from prefopt.score import load_sample, score
    from prefopt.training import train

    judge, root = str(folders["judge"]), folders["root"]
    manifest = generate(compose("generate", "model=sd3", f"model.path={folders['sd3']}", f"data.prompts={folders['prompts']}",
                                f"out={root / 'pool'}", "data.samples_per_prompt=3", "steps=2", f"height={SIZE}",
                                f"width={SIZE}", "batch_size=4"))
    cfg = compose("score", f"manifest={manifest}")
    cfg.reward = OmegaConf.create({"_target_": "prefopt.rewards.callables.Weighted", "_recursive_": False,
                                   "dims": {"pickscore": {"_target_": "prefopt.rewards.judges.PickScore", "path": judge},
                                            "clip": {"_target_": "prefopt.rewards.judges.CLIPScore", "path": judge}}})
    score(cfg)
    scored = read_rows(manifest)
    assert len(scored) == 12 and all(set(row["scores"]) == {"pickscore", "clip"} for row in scored)
    assert all(row["score"] == pytest.approx(sum(row["scores"].values()) / 2, abs=1e-6) for row in scored)
    counts = curate(compose("curate", f"manifest={manifest}", "method=dpo"))
    assert counts["pairs"] == 4  # best against worst of each prompt
    run = tmp_path / "run"
    summary = train(compose("config", "objective=dpo", "model=sd3", f"model.path={folders['sd3']}", "data=files",
                            f"data.path={manifest.parent / 'dpo' / 'train.jsonl'}", f"data.image_size={SIZE}",
                            "trainer=smoke", "trainer.max_steps=3", "trainer.batch_size=2", "trainer.learning_rate=1e-2",
                            "logger=none", "eval.num_samples=0", "lora.rank=4"), run)
    assert summary["steps"] == 3

    out = tmp_path / "evaluate"
    against_base(compose("evaluate", *_evaluate_overrides(folders, run / "final")), out)
    result = json.loads((out / "evaluation.json").read_text())["judges"]
    assert set(result) == {"pickscore", "clip_score"} and (out / "pairs.png").stat().st_size > 0
    base_rows, aligned_rows = read_rows(out / "base" / "samples.jsonl"), read_rows(out / "aligned" / "samples.jsonl")
    assert [r["seed"] for r in base_rows] == [r["seed"] for r in aligned_rows]  # the same seeds for both
    pick = PickScore(judge)
    for which, rows in (("base", base_rows), ("aligned", aligned_rows)):
        pixels = torch.stack([load_sample(out / which / row["path"]) for row in rows])
        values = pick.raw(pixels, [row["prompt"] for row in rows]).numpy()
        mean, low, high = result["pickscore"][which]
        half = 1.959964 * values.std(ddof=1) / np.sqrt(len(values))
        np.testing.assert_allclose([mean, low, high], [values.mean(), values.mean() - half, values.mean() + half],
                                   rtol=1e-4, atol=1e-4)
        if which == "base":
            base_values = values
    wins = (values > base_values) + 0.5 * (values == base_values)
    assert result["pickscore"]["win_rate"][0] == pytest.approx(wins.mean(), abs=1e-6)
    assert not np.array_equal(values, base_values)  # the adapter changed the samples
    table = (out / "evaluation.md").read_text()
    assert "| pickscore |" in table and "| clip_score |" in table


def test_a_judge_without_its_folder_is_one_line_before_any_sampling(folders, tmp_path):
    from prefopt.evaluate import against_base

    overrides = [o for o in _evaluate_overrides(folders, tmp_path) if not o.startswith("judge_paths.clip_score")]
    with pytest.raises(ConfigError) as error:
        against_base(compose("evaluate", *overrides), tmp_path / "out")
    assert "judge_paths.clip_score" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()
