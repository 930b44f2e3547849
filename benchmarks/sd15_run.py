"""A bf16 DPO run at Stable Diffusion 1.5's real shapes, through the command researchers run
(issue 6): a random-init SD 1.5 pipeline saved with ``save_pretrained``, 512 px image pairs on
disk, then ``python -m prefopt.train objective=dpo model=sd15 model.path=<it> data=files ...`` for
20 steps (LoRA, the reference = adapters disabled; gradient checkpointing as model=sd15 has it),
and the same for SFT on twice the images, the memory floor. A benchmark, not a test: it needs a
CUDA GPU (``--tiny`` runs the same steps with the tiny SD 1.5 pipeline, to check the script on CPU).

    python benchmarks/sd15_run.py                       # GPU: writes benchmarks/results/sd15_run.json
    python benchmarks/sd15_run.py --tiny --precision no # CPU: the same commands at toy size

Reported from each run's summary.json and metrics.jsonl: images/s over the training steps (a pair
is 2 images) and over the steps after the first 5 (steady state), ``torch.cuda.max_memory_allocated``
during training and what was allocated as it began; the ratio DPO / SFT(2B) of the peaks (target: at
most 1.05), and of the peaks above the start (what the steps add: with the weights in, the ratio is
diluted). The pipeline: the UNet of ``conf/model/sd15_unet.yaml`` (859.5M parameters), SD's
VAE shapes (83.7M) and CLIP ViT-L/14's 12-layer 768-d text tower (85.5M with a 514-token byte-level
vocabulary; 77 tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from step_cost import write_result

ROOT = Path(__file__).resolve().parent.parent


def sd15_pipeline():
    """SD 1.5's components at their real sizes, random init (nothing downloaded)."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from prefopt.models.tiny_pipelines import _ddim, tokenizer

    unet = UNet2DConditionModel(**OmegaConf.to_container(OmegaConf.load(ROOT / "conf/model/sd15_unet.yaml").config))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[128, 256, 512, 512],
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                        layers_per_block=2, norm_num_groups=32, sample_size=512, scaling_factor=0.18215)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                        num_hidden_layers=12, max_position_embeddings=77, vocab_size=514,
                                        bos_token_id=512, eos_token_id=513, pad_token_id=513, hidden_act="quick_gelu"))
    return StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer(77), unet=unet, scheduler=_ddim(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def build_pipeline(folder: Path, tiny: bool) -> Path:
    if (folder / "model_index.json").exists():
        return folder
    from prefopt.models.tiny_pipelines import sd15

    with torch.random.fork_rng():
        torch.manual_seed(0)
        pipe = sd15() if tiny else sd15_pipeline()
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")  # a run cut short leaves no half-written pipeline
    pipe.save_pretrained(tmp)
    del pipe
    tmp.rename(folder)
    return folder


def write_pairs(folder: Path, pairs: int, size: int) -> Path:
    """``pairs`` winner/loser pairs of smooth random images (upsampled noise) and a JSONL manifest."""
    import cv2

    manifest = folder / "pairs.jsonl"
    if manifest.exists():
        return manifest
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(pairs):
        for side in ("w", "l"):
            image = cv2.resize(rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8), (size, size),
                               interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(folder / f"{i:03d}_{side}.png"), image)
        rows.append({"winner": f"{i:03d}_w.png", "loser": f"{i:03d}_l.png", "reward_w": 0.9, "reward_l": 0.1,
                     "prompt": "a photo of a hand"})
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest


def train(work: Path, name: str, pipeline: Path, manifest: Path, size: int, args, images_per_step: int,
          *overrides: str) -> dict:
    run_dir = work / "runs" / name
    command = [sys.executable, "-m", "prefopt.train", "model=sd15", f"model.path={pipeline}", "data=files",
               f"data.path={manifest}", f"data.image_size={size}", "trainer=smoke", f"trainer.max_steps={args.steps}",
               f"trainer.mixed_precision={args.precision}", "trainer.log_every=5", "logger=none", "eval.num_samples=0",
               "trainer.overwrite=true", f"hydra.run.dir={run_dir}", *overrides]
    env = {**os.environ, "PREFOPT_CACHE": str(work / "cache"), "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"sd15_run: {name} failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    (run_dir / "train.log").write_text(done.stdout + done.stderr)
    summary = json.loads((run_dir / "summary.json").read_text())
    # steady state: the steps after the first logged ones (CUDA start-up, first allocations, AdamW state);
    # elapsed_s is logged after a device sync
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    first, last = logged[0], logged[-1]
    summary["steady_images_per_s"] = (images_per_step * (last["step"] - first["step"])
                                      / (last["elapsed_s"] - first["elapsed_s"]))
    summary["steady_steps"] = f"{first['step'] + 1}-{last['step']}"
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/prefopt_sd15", help="pipeline, images, caches and runs")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4, help="DPO pairs per step (SFT: twice as many images)")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--precision", default="bf16", choices=["no", "bf16", "fp16"])
    parser.add_argument("--tiny", action="store_true", help="the tiny SD 1.5 pipeline at 32 px (a CPU check)")
    parser.add_argument("--out", default="benchmarks/results/sd15_run.json")
    args = parser.parse_args()
    work, size = Path(args.work) / ("tiny" if args.tiny else "sd15"), 32 if args.tiny else 512
    pipeline = build_pipeline(work / "pipeline", args.tiny)
    manifest = write_pairs(work / "pairs", args.pairs, size)
    images = 2 * args.batch  # per step in both runs: B pairs, or 2B images
    runs = {"dpo": train(work, "dpo", pipeline, manifest, size, args, images, "objective=dpo",
                         f"trainer.batch_size={args.batch}"),
            "sft_2B": train(work, "sft_2B", pipeline, manifest, size, args, images, "objective=sft",
                            f"trainer.batch_size={2 * args.batch}")}
    keys = ("steps", "train_s", "images_per_s", "steady_steps", "steady_images_per_s", "peak_memory_mib",
            "start_memory_mib", "loss")
    result = {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "size": size,
              "precision": args.precision, "pairs_per_step": args.batch,
              "runs": {name: {k: summary.get(k) for k in keys} for name, summary in runs.items()}}
    dpo, sft = runs["dpo"], runs["sft_2B"]
    if "peak_memory_mib" in dpo and "peak_memory_mib" in sft:
        result["peak_memory_dpo_over_sft_2B"] = dpo["peak_memory_mib"] / sft["peak_memory_mib"]
        # the part the steps add (activations, gradients) above the weights and optimizer held at the start
        result["step_memory_dpo_over_sft_2B"] = ((dpo["peak_memory_mib"] - dpo["start_memory_mib"])
                                                 / (sft["peak_memory_mib"] - sft["start_memory_mib"]))
    for name, row in result["runs"].items():
        print(f"{name}: {row['images_per_s']:.1f} images/s over {row['steps']} steps ({row['train_s']:.1f} s), "
              f"{row['steady_images_per_s']:.1f} over steps {row['steady_steps']}; peak "
              f"{row['peak_memory_mib'] or float('nan'):.0f} MiB (at the start {row['start_memory_mib'] or float('nan'):.0f})")
    if "peak_memory_dpo_over_sft_2B" in result:
        print(f"peak memory DPO (LoRA reference) / SFT(2B): {result['peak_memory_dpo_over_sft_2B']:.3f} (target <= 1.05); "
              f"above the start: {result['step_memory_dpo_over_sft_2B']:.3f}")
    write_result(result, args.out)


if __name__ == "__main__":
    main()
