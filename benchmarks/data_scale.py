"""Data at scale (issue 23): memory and start-up of a DPO run on a tiny SD 1.5 pipeline with 1k,
10k and 100k pairs of 64 px JPEG images in Parquet shards (Pick-a-Pic v2's columns), generated here.

    python benchmarks/data_scale.py --out benchmarks/results/data_scale.json [--sizes 1000 10000 100000]
        [--old-tree /path/to/a/checkout/of/cbfdf10]   # today's growth beside it (the in-memory path)

Per size, each a fresh ``python -m prefopt.train`` (its peak RSS from /usr/bin/time):
- cold: empty cache, the encoding pass, then 50 steps: peak RSS, the pass's time;
- warm: the cache filled, 1 step: wall time to the first step, peak RSS;
- resume (smallest size): a step-10 checkpoint resumed at step 10, and the same checkpoint told
  it is at step 5,000 (its trainer_state.json rewritten: the weights do not matter for start-up);
- interleaved, three times (machines are noisy): the first step with warm caches at the smallest
  and the largest size; the pass against a bare loop over the same batches (decode, VAE, text
  encoder once per prompt) in one process, on the largest size up to 10k.
Not a test: it takes several minutes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIRS_PER_PROMPT = 14  # Pick-a-Pic v2: 851,293 pairs over 58,960 prompts
SHARD_ROWS = 10_000
SIZE = 64


def _jpeg(rng, size: int = SIZE) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    x, y = (int(v) for v in rng.integers(0, size - 16, 2))
    draw.ellipse([x, y, x + 16, y + 16], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_shards(folder: Path, pairs: int, seed: int = 0) -> Path:
    """``pairs`` comparisons in shards of SHARD_ROWS rows, Pick-a-Pic v2's columns (a tenth are ties)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    prompts = max(1, pairs // PAIRS_PER_PROMPT)
    for start in range(0, pairs, SHARD_ROWS):
        n = min(SHARD_ROWS, pairs - start)
        label = rng.choice([1.0, 0.0, 0.5], size=n, p=[0.45, 0.45, 0.1])
        table = pa.table({
            "caption": [f"prompt number {int(i)}" for i in rng.integers(0, prompts, n)],
            "jpg_0": [_jpeg(rng) for _ in range(n)], "jpg_1": [_jpeg(rng) for _ in range(n)],
            "label_0": label, "label_1": 1 - label, "has_label": [True] * n, "are_different": [True] * n,
            "best_image_uid": [f"u{start + i}" for i in range(n)], "image_0_uid": [f"a{start + i}" for i in range(n)],
            "image_1_uid": [f"b{start + i}" for i in range(n)], "model_0": ["m0"] * n, "model_1": ["m1"] * n,
            "ranking_id": list(range(start, start + n)), "user_id": [1] * n, "num_example_per_prompt": [1] * n,
        })
        pq.write_table(table, folder / f"train-{start // SHARD_ROWS:05d}.parquet")
    return folder


def _train(args: list[str], env: dict, cwd: Path) -> dict:
    """One command under /usr/bin/time: peak RSS (MiB), wall seconds, return code."""
    stats = Path(tempfile.mktemp())
    command = ["/usr/bin/time", "-o", str(stats), "-f", "%M %e", sys.executable, "-m", "prefopt.train", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    if done.returncode:
        sys.stderr.write(done.stderr[-3000:])
    rss, wall = stats.read_text().split()[-2:]
    return {"peak_rss_mib": int(rss) / 1024, "wall_s": float(wall), "rc": done.returncode}


def _common(pipeline: Path, data: Path, run: Path, steps: int) -> list[str]:
    return ["objective=dpo", "model=sd15", f"model.path={pipeline}", "model.gradient_checkpointing=false",
            "data=files", f"data.path={data}", f"data.image_size={SIZE}", "trainer=smoke", f"trainer.max_steps={steps}",
            "trainer.batch_size=4", "logger=none", f"hydra.run.dir={run}"]


def cheap_pipeline(folder: Path) -> Path:
    """prefopt's tiny SD 1.5 pipeline with a VAE that downsamples 4x through 4-8-8 channels (64 px ->
    16x16x4 latents): encoding 200k images costs minutes on 2 cores, not an hour; the UNet sees 16x16."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline

    from prefopt.models import tiny_pipelines

    tiny_pipelines.build("sd15", folder)
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None)
    pipe.vae = AutoencoderKL(block_out_channels=[4, 8, 8], in_channels=3, out_channels=3, latent_channels=4,
                             down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                             norm_num_groups=4, layers_per_block=1, sample_size=SIZE)
    pipe.save_pretrained(str(folder))
    return folder


def bare_loop(data: Path, pipeline: Path) -> float:
    """Decode, VAE and text encoder over the same batches, in one loop: the floor of the pass."""
    import pyarrow.parquet as pq
    import torch
    from diffusers import StableDiffusionPipeline

    from prefopt.data.rows import decode

    started, prompts = time.perf_counter(), {}  # from the folder, as the pass loads its encoders
    pipe = StableDiffusionPipeline.from_pretrained(str(pipeline), unet=None, safety_checker=None)
    with torch.no_grad():
        for shard in sorted(data.glob("*.parquet")):
            for batch in pq.ParquetFile(shard).iter_batches(batch_size=256):
                rows = [r for r in batch.to_pylist() if r["label_0"] != 0.5]
                for key in ("jpg_0", "jpg_1"):
                    pixels = torch.stack([decode(r[key], SIZE, None, key)[0] for r in rows])
                    for i in range(0, len(pixels), 8):
                        pipe.vae.encode(pixels[i:i + 8]).latent_dist.mode()
                for r in rows:
                    prompts.setdefault(r["caption"], None)
        texts = list(prompts)
        for i in range(0, len(texts), 8):
            pipe.encode_prompt(texts[i:i + 8], "cpu", 1, False)
    return time.perf_counter() - started


def pass_time(data: Path, pipeline: Path, cache: Path) -> float:
    """prefopt's pass over ``data`` into an empty cache, in this process (one process, no workers)."""
    from prefopt.config import DataConfig, ModelConfig
    from prefopt.data.files import build_files
    from prefopt.models import build_model

    bundle = build_model(ModelConfig(name="sd15", family="sd15", path=str(pipeline), denoiser_class="UNet2DConditionModel"))
    os.environ["PREFOPT_CACHE"] = str(cache)
    started = time.perf_counter()
    build_files(DataConfig(path=str(data), image_size=SIZE, on_bad="skip"), paired=True, model=bundle)
    return time.perf_counter() - started


def timing(work: Path, pipeline: Path, env: dict, sizes: list[int], repeats: int = 3) -> dict:
    """The ratios, each measured interleaved in one stretch (machines are noisy): the first step with
    warm caches, smallest against largest size; the pass against the bare loop on the smallest data."""
    small, large, first = min(sizes), max(sizes), {min(sizes): [], max(sizes): []}
    middle, passes, bares = max(s for s in sizes if s <= 10_000), [], []
    for repeat in range(repeats):
        for pairs in (small, large):
            first[pairs].append(_train(_common(pipeline, work / f"data_{pairs}", work / f"first_{pairs}_{repeat}", 1),
                                       env, ROOT)["wall_s"])
        passes.append(pass_time(work / f"data_{middle}", pipeline, work / f"pass_cache_{repeat}"))
        bares.append(bare_loop(work / f"data_{middle}", pipeline))
    median = statistics.median
    return {"first_step_s": {str(k): v for k, v in first.items()}, "pass_s": passes, "bare_s": bares,
            "first_step_ratio": median(first[large]) / median(first[small]),
            "throughput_ratio": median(bares) / median(passes), "pairs_for_throughput": middle}


def resume_startup(pipeline: Path, data: Path, work: Path, env: dict) -> dict:
    run = work / "resume"
    _train([*_common(pipeline, data, run, 10), "trainer.checkpoint_every=10"], env, ROOT)
    far = work / "resume_far"
    shutil.copytree(run, far)
    shutil.rmtree(far / "final")
    checkpoint = far / "checkpoints" / "step_10"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    (checkpoint / "trainer_state.json").write_text(json.dumps({**state, "step": 5000}))
    checkpoint.rename(far / "checkpoints" / "step_5000")
    shutil.rmtree(run / "final")
    near = _train([*_common(pipeline, data, run, 11), "trainer.resume=auto"], env, ROOT)
    far_run = _train([*_common(pipeline, data, far, 5001), "trainer.resume=auto"], env, ROOT)
    return {"resume_at_10": near, "resume_at_5000": far_run, "ratio": far_run["wall_s"] / near["wall_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "data_scale.json")
    parser.add_argument("--old-tree", type=Path, help="a checkout of the in-memory path (cbfdf10) to measure beside")
    parser.add_argument("--work", type=Path, default=Path(tempfile.mkdtemp(prefix="data_scale_")))
    parser.add_argument("--timing-only", action="store_true", help="rerun only the interleaved timings on --work")
    args = parser.parse_args()
    work = args.work
    env = {**os.environ, "PREFOPT_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true"}
    if args.timing_only:
        print(json.dumps(timing(work, work / "sd15", env, args.sizes), indent=1))
        return
    pipeline = cheap_pipeline(work / "sd15")
    results = {"image_size": SIZE, "sizes": {}}
    for pairs in args.sizes:
        data = write_shards(work / f"data_{pairs}", pairs)
        cold = _train(_common(pipeline, data, work / f"cold_{pairs}", 50), env, ROOT)
        folder = max((work / "cache" / "latents").iterdir(), key=lambda p: p.stat().st_mtime)
        index = json.loads((folder / "index.json").read_text())
        warm = _train(_common(pipeline, data, work / f"warm_{pairs}", 1), env, ROOT)
        results["sizes"][pairs] = {"cold_50_steps": cold, "warm_first_step": warm, "pass_s": index["seconds"],
                                   "kept": index["kept"], "prompts": index["prompts"], "cache_mib": index["bytes"] / 2**20}
        if args.old_tree and pairs <= 10_000:
            single = data / "train-00000.parquet"
            old_env = {**env, "PYTHONPATH": str(args.old_tree), "PREFOPT_CACHE": str(work / f"old_cache_{pairs}")}
            old = _common(pipeline, single, work / f"old_{pairs}", 50)
            old = [a.replace("trainer=smoke", "trainer=default") for a in old] + ["eval.num_samples=0"]
            results["sizes"][pairs]["old_in_memory_50_steps"] = _train(old, old_env, args.old_tree)
        print(json.dumps({pairs: results["sizes"][pairs]}), flush=True)
    small, large = min(args.sizes), max(args.sizes)
    results["resume"] = resume_startup(pipeline, work / f"data_{small}", work, env)
    results["timing"] = timing(work, pipeline, env, args.sizes)
    cold = [results["sizes"][s]["cold_50_steps"]["peak_rss_mib"] for s in args.sizes]
    results["summary"] = {"peak_rss_mib": cold, "peak_rss_spread_mib": max(cold) - min(cold),
                          "first_step_ratio_largest_to_smallest": results["timing"]["first_step_ratio"],
                          "pass_throughput_vs_bare_loop": results["timing"]["throughput_ratio"],
                          "resume_5000_to_10": results["resume"]["ratio"], "sizes": args.sizes, "largest": large}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results["summary"], indent=1))


if __name__ == "__main__":
    main()
