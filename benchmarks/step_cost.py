"""Step cost of each objective against the compute floor, and against a reference-style
Diffusion-DPO step. A benchmark, not a test: ratios measured in ONE run (machines are noisy).

    python benchmarks/step_cost.py                  # tiny SD-style UNet, 32x32x4 latents, batch 8
    python benchmarks/step_cost.py --batch 8 --steps 15 --out benchmarks/results/step_cost.json

Timing: every step kind runs interleaved in one process (round-robin), median of ``--steps`` after
``--warmup``; each step is a full optimizer step (forward, backward, AdamW). Floors: a paired step
on B pairs vs SFT on 2B images, and IPA on B vs SFT on B, are both ~4/3 (fwd + bwd ~ 3 forwards,
plus one reference forward). Baseline: the Diffusion-DPO step as diffusers' research example
describes it (examples/research_projects/diffusion_dpo: LoRA UNet, winners and losers concatenated
in one forward, reference by disabling the adapters, MSE per sample, -logsigmoid(beta * ...)),
written here from that description. Memory: the peak RSS a step adds above the model and
optimizer, sampled in a fresh process per step kind.
Feeding: the DPO step fed by a DataLoader over a latent dataset vs pre-made tensors.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from prefopt.cli import to_config
from prefopt.core import NoiseProcess, Reference
from prefopt.data import PreferenceDataset
from prefopt.models import add_lora, build_model
from prefopt.objectives import DPO, GAPO, HGDPO, IPA, SFT, objective_inputs
from prefopt.trainer import batch_loss, forever

CONF = str(Path(__file__).resolve().parent.parent / "conf")
TOKENS = 8
KINDS = ("sft_B", "sft_2B", "dpo", "gapo", "hgdpo", "ipa", "baseline_dpo", "dpo_dataloader")


def model_config(name: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return to_config(compose("config", overrides=[f"model={name}", "logger=none"])).model


def make_batch(kind: str, batch: int, channels: int, size: int, cond_dim: int, generator) -> dict:
    n = 2 * batch if kind == "sft_2B" else batch
    out = {"winner": torch.randn(n, channels, size, size, generator=generator),
           "cond": {"encoder_hidden_states": torch.randn(n, TOKENS, cond_dim, generator=generator)}}
    if kind in ("dpo", "gapo", "hgdpo", "baseline_dpo", "dpo_dataloader"):
        out["loser"] = torch.randn(n, channels, size, size, generator=generator)
        out["reward_w"], out["reward_l"] = torch.full((n,), 0.9), torch.full((n,), 0.4)
    return out


class Runner:
    """One step kind: its own copy of the model (same init), optimizer and reference."""

    def __init__(self, kind: str, lora: bool, args):
        cfg = model_config(args.model)
        bundle = build_model(cfg)
        self.model = bundle.denoiser.train()
        if lora:
            add_lora(self.model, rank=8, alpha=8, target_modules=["to_k", "to_q", "to_v", "to_out.0"])
        self.kind, self.lora = kind, lora
        self.process = NoiseProcess(bundle.scheduler)
        self.scheduler = bundle.scheduler
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-5)
        self.objective = {"sft_B": SFT(), "sft_2B": SFT(), "dpo": DPO(), "dpo_dataloader": DPO(), "gapo": GAPO(),
                          "hgdpo": HGDPO(), "ipa": IPA(), "baseline_dpo": None}[kind]
        needs_reference = self.objective is None or "ref_err" in objective_inputs(self.objective)
        self.reference = Reference(self.model, lora=lora) if needs_reference else None
        conf = self.model.config
        generator = torch.Generator().manual_seed(0)
        self.batch = make_batch(kind, args.batch, conf.in_channels, conf.sample_size, conf.cross_attention_dim, generator)
        if kind == "dpo_dataloader":
            n = args.batch * 64
            data = make_batch(kind, n, conf.in_channels, conf.sample_size, conf.cross_attention_dim, generator)
            dataset = PreferenceDataset(data["winner"], data["loser"], data["reward_w"], data["reward_l"])
            cond = data["cond"]["encoder_hidden_states"]
            loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, drop_last=True)
            self.batches = ({**b, "cond": {"encoder_hidden_states": cond[: len(b["winner"])]}} for b in forever(loader))

    def step(self) -> None:
        batch = next(self.batches) if self.kind == "dpo_dataloader" else self.batch
        if self.kind == "baseline_dpo":
            loss = self.baseline_loss(batch)
        else:
            loss, _ = batch_loss(self.objective, self.model, self.reference, self.process, batch)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def baseline_loss(self, batch, beta: float = 2500.0) -> torch.Tensor:
        """diffusers' research example's Diffusion-DPO step, from its published description."""
        feed = torch.cat([batch["winner"], batch["loser"]])
        b = batch["winner"].shape[0]
        noise = torch.randn_like(batch["winner"]).repeat(2, 1, 1, 1)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (b,)).repeat(2)
        noisy = self.scheduler.add_noise(feed, noise, timesteps)
        hidden = batch["cond"]["encoder_hidden_states"].repeat(2, 1, 1)
        model_pred = self.model(noisy, timesteps, hidden).sample
        model_losses = F.mse_loss(model_pred.float(), noise.float(), reduction="none").mean(dim=[1, 2, 3])
        model_w, model_l = model_losses.chunk(2)
        with torch.no_grad(), self.reference() as network:
            ref_pred = network(noisy, timesteps, hidden).sample
        ref_losses = F.mse_loss(ref_pred.float(), noise.float(), reduction="none").mean(dim=[1, 2, 3])
        ref_w, ref_l = ref_losses.chunk(2)
        logits = (ref_w - ref_l) - (model_w - model_l)
        return -F.logsigmoid(beta * logits).mean()


def time_all(args, lora: bool) -> dict[str, float]:
    runners = {kind: Runner(kind, lora, args) for kind in KINDS if lora or kind != "baseline_dpo"}
    times = {kind: [] for kind in runners}
    for round_index in range(args.warmup + args.steps):
        for kind, runner in runners.items():
            started = time.perf_counter()
            runner.step()
            if round_index >= args.warmup:
                times[kind].append(time.perf_counter() - started)
    return {kind: statistics.median(values) for kind, values in times.items()}


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def step_memory(runner: Runner, steps: int = 4) -> float:
    """Peak RSS during ``steps`` steps above the RSS after setup (MiB), sampled every millisecond:
    what the steps cost (activations, gradients, optimizer state), not the interpreter and model.
    The allocator keeps freed memory, so the high-water mark is what a step needs at most."""
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
    return peak[0] - baseline


def peak_memory(args, kind: str, lora: bool) -> float:
    """Step memory (MiB above setup, see ``step_memory``) of ``kind`` in a fresh process."""
    command = [sys.executable, __file__, "--memory-of", kind, "--batch", str(args.batch), "--model", args.model]
    if not lora:
        command.append("--full")
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny_sd")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default="benchmarks/results/step_cost.json")
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.memory_of:
        print(step_memory(Runner(args.memory_of, not args.full, args)))
        return

    result = {"model": args.model, "batch": args.batch, "steps": args.steps, "threads": torch.get_num_threads()}
    for mode, lora in (("lora", True), ("full", False)):
        seconds = time_all(args, lora)
        memory = {kind: peak_memory(args, kind, lora) for kind in ("sft_B", "sft_2B", "dpo", "ipa")}
        ratios = {
            "paired_over_sft_2B": {k: seconds[k] / seconds["sft_2B"] for k in ("dpo", "gapo", "hgdpo")},
            "ipa_over_sft_B": seconds["ipa"] / seconds["sft_B"],
            "dataloader_over_tensors": seconds["dpo_dataloader"] / seconds["dpo"],
            "memory_dpo_over_sft_2B": memory["dpo"] / memory["sft_2B"],
            "memory_ipa_over_sft_B": memory["ipa"] / memory["sft_B"],
        }
        if lora:
            ratios["dpo_over_baseline"] = seconds["dpo"] / seconds["baseline_dpo"]
        result[mode] = {"seconds": seconds, "step_peak_rss_mib": memory, "ratios": ratios}
        print(f"[{mode}] step seconds: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in seconds.items()))
        print(f"[{mode}] step peak RSS above setup, MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in memory.items()))
        print(f"[{mode}] ratios: {json.dumps(ratios, indent=None)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
