"""HG-DPO's stage sets from real images: a pool generated from the real images' captions, the real
images fitted to the pool's size (hard winners), part-noised reconstructions of them made with the
pipeline's img2img variant (normal winners), the pool's best vs worst (easy); then 3 training steps
through the three stages with data.stages."""

from __future__ import annotations

import json

import numpy as np
import pytest
from commands import compose as _compose
from commands import rows as _rows
from PIL import Image

from prefopt.curate import curate
from prefopt.errors import ConfigError
from prefopt.generate import generate
from prefopt.models import tiny_pipelines
from prefopt.score import score
from prefopt.training import train

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("hgdpo")
    pipeline = tiny_pipelines.build("sd15", root / "sd15")
    rows = []
    for i, colour in enumerate(COLOURS):
        Image.new("RGB", (48, 24), colour).save(root / f"real{i}.png")  # 2:1, the pool is 1:1
        rows.append({"image": f"real{i}.png", "prompt": f"person {i}"})
    (root / "real.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = generate(_compose("generate", f"model.path={pipeline}", f"data.prompts={root / 'real.jsonl'}",
                                 f"out={root / 'pool'}", "data.samples_per_prompt=3", "steps=2", "height=32",
                                 "width=32"))
    score(_compose("score", f"manifest={manifest}", "reward._target_=user_rewards.checksum"))
    return root, pipeline, manifest


def test_hgdpo_stage_sets_and_curriculum_training(pool, tmp_path, model_cache):
    root, pipeline, manifest = pool
    out = root / "sets"
    counts = curate(_compose("curate", f"manifest={manifest}", "method=hgdpo", f"real={root / 'real.jsonl'}",
                             f"out={out}"))
    rows = _rows(manifest)
    worst = {i: min((r for r in rows if r["prompt_index"] == i), key=lambda r: r["score"]) for i in range(3)}
    hard = _rows(out / "hard.jsonl")
    assert [(r["winner"], r["prompt"]) for r in hard] == [(f"real/{i:06d}.png", f"person {i}") for i in range(3)]
    for i, row in enumerate(hard):
        assert (out / row["loser"]).resolve() == (manifest.parent / worst[i]["path"]).resolve()
        fitted = np.asarray(Image.open(out / row["winner"]))
        assert fitted.shape == (32, 32, 3) and (fitted == COLOURS[i]).all()  # the pool's size, centre-cropped
    spread = sum(len({r["score"] for r in rows if r["prompt_index"] == i}) > 1 for i in range(3))
    assert counts["easy_pairs"] == len(_rows(out / "easy.jsonl")) == spread
    assert counts["hard_pairs"] == 3 and not (out / "normal.jsonl").exists()

    recon = generate(_compose("generate", f"model.path={pipeline}", f"data.prompts={out / 'real.jsonl'}",
                              "data.conditions=[image]", "pipeline=StableDiffusionImg2ImgPipeline",
                              "+pipeline_kwargs.strength=0.5", f"out={root / 'recon'}", "data.samples_per_prompt=1",
                              "steps=4"))
    recon_rows = _rows(recon)
    assert [r["image"] for r in recon_rows] == [f"real/{i:06d}.png" for i in range(3)]
    counts = curate(_compose("curate", f"manifest={manifest}", "method=hgdpo", f"real={root / 'real.jsonl'}",
                             f"recon={recon}", f"out={out}"))
    normal = _rows(out / "normal.jsonl")
    assert counts["normal_pairs"] == 3
    for i, row in enumerate(normal):
        assert (out / row["winner"]).resolve() == (recon.parent / recon_rows[i]["path"]).resolve()
        assert (out / row["loser"]).resolve() == (manifest.parent / worst[i]["path"]).resolve()
        assert Image.open(out / row["winner"]).size == (32, 32)

    stages = [f"+data.stages.{s}={out / (s + '.jsonl')}" for s in ("easy", "normal", "hard")]
    summary = train(_compose("config", "objective=hgdpo", "model=sd15", f"model.path={pipeline}", "data=files",
                             *stages, "data.image_size=32", "eval.num_samples=0", "trainer=smoke",
                             "trainer.max_steps=3", "trainer.batch_size=2", "trainer.log_every=1", "logger=none",
                             "lora.rank=4"), tmp_path / "run")
    assert summary["steps"] == 3 and np.isfinite(summary["loss"])
    with open(tmp_path / "run" / "metrics.jsonl") as handle:
        assert [json.loads(line).get("stage") for line in handle] == ["easy", "normal", "hard"]


def test_hgdpo_real_rows_must_match_the_pool_prompts(pool, tmp_path):
    root, _, manifest = pool
    (tmp_path / "other.jsonl").write_text(json.dumps({"image": str(root / "real0.png"), "prompt": "someone"}) + "\n")
    with pytest.raises(ConfigError, match=r"other.jsonl:1: prompt 'someone' but the pool's prompt 0 is 'person 0'"):
        curate(_compose("curate", f"manifest={manifest}", "method=hgdpo", f"real={tmp_path / 'other.jsonl'}",
                        f"out={tmp_path / 'sets'}"))
