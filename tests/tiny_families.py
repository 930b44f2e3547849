"""The tiny model families' test setup: their pipelines, four pairs with prompts as images and as
clips, the training config of the family tests, and the cache a family's encoders make of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from PIL import Image

from prefopt.cli import to_config
from prefopt.models import tiny_pipelines

CONF = str(Path(__file__).resolve().parents[1] / "conf")
FAMILIES = ["sd15", "sdxl", "sd3", "flux", "animatediff", "wan", "wan_i2v", "cogvideox", "cogvideox_i2v"]
VIDEO = {"animatediff", "wan", "wan_i2v", "cogvideox", "cogvideox_i2v"}
I2V = {"wan_i2v", "cogvideox_i2v"}
UNETS = {"sd15", "sdxl", "animatediff"}
MODEL = {"cogvideox_i2v": "cogvideox"}  # the conf/model option of each tiny pipeline (one family, both kinds)
SIZE, FRAMES, RANK, ALPHA = 32, 5, 4, 8.0



def family_config(*overrides):
    base = ["logger=none", "data=files", f"data.image_size={SIZE}", "eval.num_samples=0", "trainer=smoke",
            "trainer.max_steps=3", "trainer.batch_size=2", "trainer.log_every=1", "trainer.learning_rate=1e-3",
            f"lora.rank={RANK}", f"lora.alpha={ALPHA}"]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return to_config(compose("config", overrides=[*base, *overrides]))


def build_pipelines(root: Path) -> dict[str, Path]:
    return {family: tiny_pipelines.build(family, root / family) for family in FAMILIES}


def video(path: Path, seed: int) -> str:
    import cv2

    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (SIZE, SIZE))
    for _ in range(FRAMES):
        writer.write(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    writer.release()
    return path.name


def build_manifests(root: Path) -> dict[str, Path]:
    """Four pairs with prompts, as images and as clips of FRAMES frames."""
    rng = np.random.default_rng(0)
    images, clips = [], []
    for i in range(4):
        for name in ("w", "l"):
            Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / f"{name}{i}.png")
        prompt = ["a hand waving", "two hands", "a fist", ""][i]
        images.append({"winner": f"w{i}.png", "loser": f"l{i}.png", "prompt": prompt})
        clips.append({"winner": video(root / f"cw{i}.mp4", 2 * i), "loser": video(root / f"cl{i}.mp4", 2 * i + 1),
                      "prompt": prompt})
    for name, rows in (("images", images), ("clips", clips)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"images": root / "images.jsonl", "clips": root / "clips.jsonl"}


def family_overrides(family, pipelines, manifests):
    data = manifests["clips"] if family in VIDEO else manifests["images"]
    extra = [f"data.num_frames={FRAMES}"] if family in VIDEO else []
    return [f"model={MODEL.get(family, family)}", f"model.path={pipelines[family]}", f"data.path={data}", *extra]


def cached(family, pipelines, manifests, tmp_path, monkeypatch):
    """(the cache of ``family``'s manifest as training reads it, the rows decoded to pixels, the config)."""
    from prefopt.data import build_dataset
    from prefopt.models import build_model

    cfg = family_config("objective=dpo", *family_overrides(family, pipelines, manifests))
    monkeypatch.setenv("PREFOPT_CACHE", str(tmp_path / "cache"))
    encoded = build_dataset(cfg.data, paired=True, model=build_model(cfg.model))
    manifest = Path(cfg.data.path)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    return encoded, rows, manifest.parent
