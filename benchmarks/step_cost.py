"""Step cost of each objective against the compute floor, and against a reference-style
Diffusion-DPO step. A benchmark, not a test: ratios measured in ONE run (machines are noisy).

    python benchmarks/step_cost.py                  # tiny SD-style UNet, 32x32x4 latents, batch 8
    python benchmarks/step_cost.py --batch 8 --steps 15 --out benchmarks/results/step_cost.json
    python benchmarks/step_cost.py --model sd15_unet --tokens 77 --device cuda --precision bf16   # SD 1.5 size, GPU

Timing: every step kind runs interleaved in one process (round-robin), median of ``--steps`` after
``--warmup``; each step is a full optimizer step (forward, backward, AdamW). Floors: a paired step
on B pairs vs SFT on 2B images, and IPA on B vs SFT on B, are both ~4/3 (fwd + bwd ~ 3 forwards,
plus one reference forward). Baseline: the Diffusion-DPO step as diffusers' research example
describes it (examples/research_projects/diffusion_dpo: LoRA UNet, winners and losers concatenated
in one forward, reference by disabling the adapters, MSE per sample, -logsigmoid(beta * ...)),
written here from that description. Memory: what a step adds above the setup (the model, its
frozen copy, the data), in a fresh process per step kind: the peak RSS on CPU,
``torch.cuda.max_memory_allocated`` on CUDA. ``--precision bf16``: the frozen weights in bf16, the
trained ones in fp32, steps under autocast, as ``trainer.mixed_precision=bf16`` runs them.
Feeding: the DPO step fed by a DataLoader over a latent dataset vs pre-made tensors.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from functools import cached_property
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from prefopt.cli import to_config
from prefopt.core import NoiseProcess, Reference
from prefopt.data import PreferenceDataset
from prefopt.models import add_lora, build_model, half_precision_base
from prefopt.objectives import DPO, GAPO, HGDPO, IPA, SFT, objective_inputs
from prefopt.training.batch import batch_loss, forever
from prefopt.training.setup import WEIGHT_DTYPES as DTYPES

CONF = str(Path(__file__).resolve().parent.parent / "conf")
KINDS = ("sft_B", "sft_2B", "dpo", "gapo", "hgdpo", "ipa", "baseline_dpo", "dpo_dataloader")


def model_config(name: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return to_config(compose("config", overrides=[f"model={name}", "logger=none"])).model


def make_batch(kind: str, batch: int, channels: int, size: int, tokens: int, cond_dim: int, generator) -> dict:
    n = 2 * batch if kind == "sft_2B" else batch
    out = {"winner": torch.randn(n, channels, size, size, generator=generator),
           "cond": {"encoder_hidden_states": torch.randn(n, tokens, cond_dim, generator=generator)}}
    if kind in ("dpo", "gapo", "hgdpo", "baseline_dpo", "dpo_dataloader"):
        out["loser"] = torch.randn(n, channels, size, size, generator=generator)
        out["reward_w"], out["reward_l"] = torch.full((n,), 0.9), torch.full((n,), 0.4)
    return out


class Setup:
    """One mode's model (LoRA, or all weights), optimizer and reference, shared by every step kind
    of that mode: timings do not depend on the weights' values, and at SD 1.5 size one copy per
    kind would not fit. Under ``--precision`` the frozen weights (LoRA's base, the full fine-tune's
    copy) are in half precision, the trained ones in fp32, the steps under autocast, as in the trainer."""

    def __init__(self, lora: bool, args):
        self.device, self.dtype = torch.device(args.device), DTYPES[args.precision]
        bundle = build_model(model_config(args.model))
        self.model = bundle.denoiser.to(self.device).train()
        if lora:
            add_lora(self.model, rank=8, alpha=8, target_modules=["to_k", "to_q", "to_v", "to_out.0"])
            half_precision_base(self.model, self.dtype)
        if args.channels_last:
            self.model.to(memory_format=torch.channels_last)
        compiled = args.compile != "no"
        self.network = torch.compile(self.model, backend=args.compile) if compiled else self.model
        self.scheduler = bundle.scheduler
        self.process = NoiseProcess(bundle.scheduler)
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-5)
        self.lora, self.compile = lora, args.compile

    @cached_property
    def reference(self) -> Reference:
        """Made when a step kind first needs it (a full fine-tune's frozen copy is memory SFT does not use)."""
        return Reference(self.model, lora=self.lora, dtype=self.dtype, network=self.network, compile=self.compile)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)


class Runner:
    """One step kind on a mode's :class:`Setup`: its objective and its batch."""

    def __init__(self, kind: str, setup: Setup, args):
        self.kind, self.setup = kind, setup
        self.objective = {"sft_B": SFT(), "sft_2B": SFT(), "dpo": DPO(), "dpo_dataloader": DPO(), "gapo": GAPO(),
                          "hgdpo": HGDPO(), "ipa": IPA(), "baseline_dpo": None}[kind]
        needs_reference = self.objective is None or "ref_err" in objective_inputs(self.objective)
        self.reference = setup.reference if needs_reference else None
        conf = setup.model.config
        generator = torch.Generator().manual_seed(0)
        shape = (conf.in_channels, conf.sample_size, args.tokens, conf.cross_attention_dim)
        self.batch = _to(make_batch(kind, args.batch, *shape, generator), setup.device)
        if kind == "dpo_dataloader":  # a dataset in host memory, batches moved as accelerate's loader moves them
            data = make_batch(kind, args.batch * 64, *shape, generator)
            dataset = PreferenceDataset(data["winner"], data["loser"], data["reward_w"], data["reward_l"])
            cond = data["cond"]["encoder_hidden_states"]
            loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, drop_last=True,
                                pin_memory=setup.device.type == "cuda")
            self.batches = (_to({**b, "cond": {"encoder_hidden_states": cond[: len(b["winner"])]}}, setup.device)
                            for b in forever(loader))

    def step(self) -> None:
        setup = self.setup
        batch = next(self.batches) if self.kind == "dpo_dataloader" else self.batch
        with setup.autocast():
            if self.kind == "baseline_dpo":
                loss = self.baseline_loss(batch)
            else:
                loss, _ = batch_loss(self.objective, setup.network, self.reference, setup.process, batch)
        loss.backward()
        setup.optimizer.step()
        setup.optimizer.zero_grad(set_to_none=True)

    def baseline_loss(self, batch, beta: float = 2500.0) -> torch.Tensor:
        """diffusers' research example's Diffusion-DPO step, from its published description."""
        scheduler, network = self.setup.scheduler, self.setup.network
        feed = torch.cat([batch["winner"], batch["loser"]])
        b = batch["winner"].shape[0]
        noise = torch.randn_like(batch["winner"]).repeat(2, 1, 1, 1)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), device=feed.device).repeat(2)
        noisy = scheduler.add_noise(feed, noise, timesteps)
        hidden = batch["cond"]["encoder_hidden_states"].repeat(2, 1, 1)
        model_pred = network(noisy, timesteps, hidden).sample
        model_losses = F.mse_loss(model_pred.float(), noise.float(), reduction="none").mean(dim=[1, 2, 3])
        model_w, model_l = model_losses.chunk(2)
        with torch.no_grad(), self.reference() as reference:
            ref_pred = reference(noisy, timesteps, hidden).sample
        ref_losses = F.mse_loss(ref_pred.float(), noise.float(), reduction="none").mean(dim=[1, 2, 3])
        ref_w, ref_l = ref_losses.chunk(2)
        logits = (ref_w - ref_l) - (model_w - model_l)
        return -F.logsigmoid(beta * logits).mean()


def _to(batch: dict, device: torch.device) -> dict:
    return {k: _to(v, device) if isinstance(v, dict) else v.to(device, non_blocking=True) for k, v in batch.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rounds(runners: dict, warmup: int, steps: int) -> tuple[dict, dict]:
    """Every runner's step, interleaved round-robin for ``warmup + steps`` rounds, each timed
    between device syncs: (seconds of the timed rounds, seconds of the warm-up rounds), per key."""
    timed, warm = {key: [] for key in runners}, {key: [] for key in runners}
    for round_index in range(warmup + steps):
        for key, runner in runners.items():
            _sync(runner.setup.device)
            started = time.perf_counter()
            runner.step()
            _sync(runner.setup.device)
            (timed if round_index >= warmup else warm)[key].append(time.perf_counter() - started)
    return timed, warm


def time_all(args, lora: bool) -> dict[str, float]:
    setup = Setup(lora, args)
    runners = {kind: Runner(kind, setup, args) for kind in KINDS if lora or kind != "baseline_dpo"}
    times, _ = time_rounds(runners, args.warmup, args.steps)
    del runners, setup  # the model and optimizer, before the memory runs' fresh processes
    gc.collect()
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return {kind: statistics.median(values) for kind, values in times.items()}


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def step_memory(runner: Runner, steps: int = 4) -> dict[str, float]:
    """What ``steps`` steps add above the setup (model, data; MiB), and on CUDA the absolute peak.

    CPU: the peak RSS above the RSS after setup, sampled every millisecond (the allocator keeps
    freed memory, so the high-water mark is what a step needs at most). CUDA:
    ``torch.cuda.max_memory_allocated`` above ``memory_allocated`` after setup. Either way the
    first step's optimizer state and gradients count, as they do in training."""
    device = runner.setup.device
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        for _ in range(steps):
            runner.step()
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"step": (peak - baseline) / 2**20, "total": peak / 2**20}
    baseline, peak, done = _rss_mib(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    for _ in range(steps):
        runner.step()
    done.set()
    sampler.join()
    return {"step": peak[0] - baseline, "total": peak[0]}


def peak_memory(args, kind: str, lora: bool) -> dict[str, float]:
    """:func:`step_memory` of ``kind`` in a fresh process (MiB)."""
    command = [sys.executable, __file__, "--memory-of", kind, *sys.argv[1:]]
    if not lora:
        command.append("--full")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"step_cost: measuring the memory of {kind} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_result(result: dict, path: str) -> None:
    """A benchmark's result as JSON at ``path`` (its folder made)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny_sd", help="a conf/model group with a random-init config")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=8, help="text tokens per sample (SD 1.5: 77)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--precision", default="no", choices=sorted(DTYPES), help="frozen weights' dtype, autocast")
    parser.add_argument("--compile", default="no", help="torch.compile backend (inductor; no: eager)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default="benchmarks/results/step_cost.json")
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.memory_of:
        print(json.dumps(step_memory(Runner(args.memory_of, Setup(not args.full, args), args))))
        return

    result = {k: getattr(args, k) for k in ("model", "batch", "tokens", "steps", "device", "precision", "compile",
                                            "channels_last")}
    result["threads"] = torch.get_num_threads()
    if args.device == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
    for mode, lora in (("lora", True), ("full", False)):
        seconds = time_all(args, lora)
        memory = {kind: peak_memory(args, kind, lora) for kind in ("sft_B", "sft_2B", "dpo", "ipa")}
        step = {kind: m["step"] for kind, m in memory.items()}
        ratios = {
            "paired_over_sft_2B": {k: seconds[k] / seconds["sft_2B"] for k in ("dpo", "gapo", "hgdpo")},
            "ipa_over_sft_B": seconds["ipa"] / seconds["sft_B"],
            "dataloader_over_tensors": seconds["dpo_dataloader"] / seconds["dpo"],
            "memory_dpo_over_sft_2B": step["dpo"] / step["sft_2B"],
            "memory_ipa_over_sft_B": step["ipa"] / step["sft_B"],
        }
        if lora:
            ratios["dpo_over_baseline"] = seconds["dpo"] / seconds["baseline_dpo"]
        images = {"sft_B": args.batch, "sft_2B": 2 * args.batch, "ipa": args.batch, "dpo": 2 * args.batch}
        result[mode] = {"seconds": seconds, "images_per_s": {k: images[k] / seconds[k] for k in images},
                        "memory_mib": memory, "ratios": ratios}
        print(f"[{mode}] step seconds: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in seconds.items()))
        print(f"[{mode}] memory MiB (step above setup / peak): "
              + ", ".join(f"{k} {m['step']:.0f}/{m['total']:.0f}" for k, m in memory.items()))
        print(f"[{mode}] ratios: {json.dumps(ratios, indent=None)}")
        write_result(result, args.out)  # after each mode: a run cut short keeps what it measured


if __name__ == "__main__":
    main()
