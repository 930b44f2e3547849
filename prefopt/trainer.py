"""The one training loop every objective uses: build, loop, step, log, save.

Per optimizer step: a batch of winners (and losers) is noised once (pairs share noise and t), the
policy runs with grad and the reference without, in one batched forward each; the objective turns
the per-sample errors into ``(loss, metrics)``. Curriculum objectives (HG-DPO) expose
``curriculum(total_steps)``; the loop switches to each stage's data and, if asked, resets the
reference to the previous stage's model.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from prefopt.checkpoints import (
    REFERENCE_PREFIX,
    SignalFlag,
    guard_run_dir,
    load_latest,
    pack_round,
    save_checkpoint,
    truncate_metrics,
    unpack_round,
)
from prefopt.config import Config
from prefopt.core import NoiseProcess, Reference, preference_errors
from prefopt.data import build_dataset
from prefopt.data.synth import cache_root
from prefopt.data.synth_anim import ANIMATION_DATA
from prefopt.errors import ConfigError, Preempted, TrainingError
from prefopt.launch import make_accelerator, release_state
from prefopt.models import ModelBundle, add_lora, build_model, half_precision_base, save_weights
from prefopt.modules.hand_aware import HandAware
from prefopt.modules.hand_aware.grid import region_weights
from prefopt.modules.hand_aware.sources import hand_masks
from prefopt.objectives import objective_inputs
from prefopt.tracking import Tracker

log = logging.getLogger("prefopt")
ROUND_SEED_STRIDE = 1000  # round r draws its pool with data.seed + 1000 r
SHIPPED_BASES = {"synth": "base", "synth_anim": "anim_base"}  # benchmarks made of model samples: their pretrained base
SYNTH_HANDS = ("synth", "renders", "mix")  # datasets whose models the SynthHands evaluation scores
WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}  # of the frozen weights


def forever(loader):
    """Batches from ``loader``, epoch after epoch."""
    while True:
        yield from loader


def _stages(objective, total_steps: int) -> list[tuple[str | None, int]]:
    if hasattr(objective, "curriculum"):
        return objective.curriculum(total_steps)
    return [(None, total_steps)]


def schedule(objective, total_steps: int, rounds: int = 1) -> list[tuple[int, str | None, int]]:
    """(round, stage, steps) segments: the curriculum's stages (one ``None`` stage for objectives
    without a curriculum) cut where a round of generate-score-train ends; rounds split the steps evenly."""
    ends = [round(total_steps * (r + 1) / rounds) for r in range(rounds)]
    segments, start = [], 0
    for stage, steps in _stages(objective, total_steps):
        stop = start + steps
        while start < stop:
            r = next(i for i, end in enumerate(ends) if end > start)
            cut = min(stop, ends[r])
            segments.append((r, stage, cut - start))
            start = cut
    return segments


def _check_channels(model, dataset) -> None:
    expected = getattr(model.config, "in_channels", None)
    channels = dataset.sample_shape[0]
    if expected is not None and expected != channels:
        raise ConfigError(f"model.config.in_channels is {expected} but the data has {channels} channels")


def _check_fields(objective, datasets: dict) -> None:
    """Fail at start-up, not mid-run, when the data lacks what the objective reads."""
    name = type(objective).__name__.lower()
    for dataset in datasets.values():
        if objective.paired and not dataset.paired:
            raise ConfigError(f"objective={name} needs winner/loser pairs; {dataset.name} has winners only")
        for field in ("reward_w", "reward_l"):
            if field in objective_inputs(objective) and field not in dataset.fields:
                raise ConfigError(f"objective={name} reads {field}; {dataset.name} has no rewards")


def batch_loss(objective, model, reference, process, batch: dict, hand_aware: HandAware | None = None,
               shard: tuple[int, int] = (0, 1), family=None):
    """One batch's ``(loss, metrics)``: winners (and losers) noised once, policy and reference
    errors in one batched forward each, then the objective's equation on what it reads.

    ``batch``: ``winner`` (B, ...), for paired objectives ``loser``, optional ``reward_w``/``reward_l``,
    hand masks ``mask_w``/``mask_l`` and ``cond`` (per-sample model kwargs such as
    ``encoder_hidden_states``). With ``hand_aware.enabled`` the errors weigh the hand by
    W = 1 + (lambda - 1) M; whenever masks are given, the policy's error inside and outside them is
    logged (``err_in_hand``, ``err_out_hand``). ``shard=(rank, world)``: this process's part of a
    data-parallel global batch (the noise is drawn for the whole of it). ``family``: a latent model
    family, which may lay out ``cond`` its own way (AnimateDiff: per frame)."""
    inputs = objective_inputs(objective)
    x0 = torch.cat([batch["winner"], batch["loser"]]) if objective.paired else batch["winner"]
    mask = batch.get("mask_w")
    if mask is not None and objective.paired:
        mask = torch.cat([mask, batch["mask_l"]]) if "mask_l" in batch else None
    weights = None
    if hand_aware is not None and hand_aware.enabled:
        if mask is None:
            raise ConfigError("hand_aware.enabled: the batch has no hand masks")
        weights = region_weights(mask, hand_aware.weight, hand_aware.reference_frame)
    cond = family.denoiser_cond(batch.get("cond"), batch["winner"]) if family else batch.get("cond")
    errors = preference_errors(model, reference if "ref_err" in inputs else None, process, x0,
                               groups=2 if objective.paired else 1, cond=cond, weights=weights,
                               with_stats="policy_stats" in inputs, region=mask, shard=shard)
    available = {"policy_err": errors.policy_err, "ref_err": errors.ref_err, "t": errors.t,
                 "policy_stats": errors.policy_stats, "ref_stats": errors.ref_stats,
                 "reward_w": batch.get("reward_w"), "reward_l": batch.get("reward_l")}
    loss, metrics = objective(**{name: available[name] for name in inputs})
    if errors.region_err is not None:
        inside, outside = errors.region_err
        metrics = {**metrics, "err_in_hand": inside.nanmean(), "err_out_hand": outside.nanmean()}
    return loss, metrics


def throughput(cfg: Config, steps: int, seconds: float, accelerator, memory_at_start: int | None = None) -> dict:
    """Training speed of this process's ``steps`` (rounds' sampling excluded): ``images_per_s``
    counts every image through the policy, all processes together (a pair is 2, so a paired step on
    B pairs and SFT on 2B images compare directly); on CUDA ``peak_memory_mib``, this process's
    ``torch.cuda.max_memory_allocated`` during training, and ``start_memory_mib``, what was
    allocated as training began (the model, its frozen copy, the optimizer)."""
    images = steps * cfg.trainer.batch_size * cfg.trainer.gradient_accumulation_steps * accelerator.num_processes
    out = {"train_s": seconds, "images_per_s": images * (2 if cfg.objective.paired else 1) / seconds if seconds else 0.0}
    if memory_at_start is not None:
        out.update(peak_memory_mib=torch.cuda.max_memory_allocated(accelerator.device) / 2**20,
                   start_memory_mib=memory_at_start / 2**20)
    return out


def train(cfg: Config, run_dir: Path, config_dict: dict | None = None) -> dict:
    """Train ``cfg.objective``; write checkpoints and ``metrics.jsonl`` under ``run_dir``.

    Guards: a step whose loss or gradient is not finite is skipped (no update) and counted;
    ``trainer.max_nonfinite_steps`` in a row stop the run, leaving the last checkpoint as it was.
    SIGTERM (preemption) writes a checkpoint at the end of the current step and stops
    (:class:`Preempted`); ``trainer.resume=auto`` continues from the newest checkpoint that loads.
    However it ends, accelerate's process-wide state is released for the next run in this process."""
    try:
        return _train(cfg, run_dir, config_dict)
    finally:
        release_state()


def _train(cfg: Config, run_dir: Path, config_dict: dict | None) -> dict:
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    trainer = cfg.trainer
    accelerator = make_accelerator(trainer)
    guard_run_dir(run_dir, trainer.resume, trainer.overwrite, remove=accelerator.is_main_process)
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)
    objective = cfg.objective
    inputs = objective_inputs(objective)
    segments = schedule(objective, trainer.max_steps, trainer.rounds)

    bundle = build_model(cfg.model)
    if cfg.model.path is None and cfg.data.name in SHIPPED_BASES:
        log.warning("data=%s aligns the samples of model=%s, which is random-init (model.path is null); its "
                    "pretrained base ships as model=%s", cfg.data.name, cfg.model.name, SHIPPED_BASES[cfg.data.name])
    model = bundle.denoiser
    weight_dtype = WEIGHT_DTYPES[trainer.mixed_precision]

    def encoded(dataset):
        """Pixels and prompts as VAE latents and text embeddings (model families), cached on disk."""
        from prefopt.data.latents import encode_dataset

        return encode_dataset(dataset, bundle.family, bundle.path, cache_root() / "latents",
                              accelerator.device, weight_dtype, dilate=cfg.hand_aware.dilate)

    def round_data(r: int, source) -> dict:
        """Round ``r``'s dataset per stage; model-made data (data=synth) is sampled from ``source``."""
        data_cfg = replace(cfg.data, seed=cfg.data.seed + ROUND_SEED_STRIDE * r)
        with accelerator.main_process_first():  # the main process samples (and caches) model-made data first
            datasets = {stage: build_dataset(data_cfg, paired=objective.paired, stage=stage, model=source)
                        for rr, stage, _ in segments if rr == r}
            if cfg.hand_aware.enabled:  # on the pixels; a latent model's encoding fits them to its grid
                hand_aware = replace(cfg.hand_aware, dilate=0) if bundle.family else cfg.hand_aware
                for dataset in datasets.values():
                    dataset.set_masks(hand_masks(dataset, hand_aware, cache_root() / "hand_masks"))
            if bundle.family is not None:
                datasets = {stage: encoded(dataset) for stage, dataset in datasets.items()}
        # the budget: a round's stages share one scored pool; pairs are counted once per round
        budget["reward_calls"] += max(d.info.get("reward_calls", 0) for d in datasets.values())
        budget["pairs"] += max(len(d) for d in datasets.values()) if objective.paired else 0
        return datasets

    def pool_metrics(datasets: dict) -> dict:
        """The scored pool's good-hand rate and mean reward: the policy's reward at a round's start."""
        info = next(iter(datasets.values())).info
        return {f"pool/{k}": info[k] for k in ("good_rate", "mean_reward") if k in info}

    budget = {"reward_calls": 0, "pairs": 0}
    datasets = round_data(0, bundle)  # before LoRA: the base model
    _check_fields(objective, datasets)
    if cfg.lora.enabled:
        add_lora(model, cfg.lora.rank, cfg.lora.alpha, cfg.lora.target_modules)
        half_precision_base(model, weight_dtype)  # the frozen base in half precision, the adapter trains in fp32
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=trainer.learning_rate, weight_decay=trainer.weight_decay)
    # accelerate's prepared scheduler steps once per process per optimizer step: scale like diffusers' scripts
    lr_scheduler = get_scheduler(trainer.lr_scheduler, optimizer,
                                 num_warmup_steps=trainer.warmup_steps * accelerator.num_processes,
                                 num_training_steps=trainer.max_steps * accelerator.num_processes)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    policy = accelerator.unwrap_model(model, keep_torch_compile=False)  # eager: saving, EMA, sampling rounds
    ema = None
    if trainer.ema_decay:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(trainable, decay=trainer.ema_decay)
        accelerator.register_for_checkpointing(ema)
    reference = (Reference(policy, lora=cfg.lora.enabled, dtype=weight_dtype, network=model, compile=trainer.compile)
                 if "ref_err" in inputs else None)
    process = NoiseProcess(bundle.scheduler, trainer.timestep_sampling, trainer.logit_mean, trainer.logit_std,
                           trainer.mode_scale)
    shard = (accelerator.process_index, accelerator.num_processes)
    set_seed(cfg.seed)  # the same RNG on every process: each draws the global batch's noise and keeps its rows

    step = skipped = 0
    starts = [sum(s for _, _, s in segments[:i]) for i in range(len(segments))]
    first_segment = previous_segment = 0
    reference_moved, last_checkpoint = False, None
    restored = load_latest(accelerator, run_dir, trainer.resume) if trainer.resume != "none" else None
    if restored is not None:
        state, extra, last_checkpoint = restored
        step, skipped = state["step"], state["skipped"]
        first_segment = max(i for i, start in enumerate(starts) if start <= step)
        if first_segment and starts[first_segment] == step:  # saved as the previous segment ended
            previous_segment = first_segment - 1
        datasets = unpack_round(extra, datasets)
        moved = {k[len(REFERENCE_PREFIX):]: v for k, v in extra.items() if k.startswith(REFERENCE_PREFIX)}
        if moved:  # HG-DPO's previous-stage reference, as it was at the checkpoint
            reference.frozen.load_state_dict(moved)
            reference_moved = True
        if accelerator.is_main_process:
            truncate_metrics(run_dir / "metrics.jsonl", step)

    first_step = step  # this process's first step: a resumed run times only its own steps
    objective_name = type(objective).__name__.lower()
    tracker = Tracker(cfg.logger, run_dir, config_dict or {}, enabled=accelerator.is_main_process,
                      job_type=objective_name, tags=[objective_name, f"data={cfg.data.name}", f"seed={cfg.seed}"])
    if restored is None and pool_metrics(datasets):
        tracker.log(pool_metrics(datasets), step)
    started, window, in_a_row = time.perf_counter(), [], 0
    sampling_s = 0.0  # time the rounds spend re-sampling their pools: not training throughput
    memory_at_start = None
    if accelerator.device.type == "cuda":  # the training's peak, above what the model and optimizer hold at its start
        torch.cuda.reset_peak_memory_stats(accelerator.device)
        memory_at_start = torch.cuda.memory_allocated(accelerator.device)
    progress = tqdm(total=trainer.max_steps, initial=step, disable=not accelerator.is_main_process,
                    desc=type(objective).__name__)
    stop = SignalFlag(signal.SIGTERM)

    def checkpoint(round_index: int) -> Path:
        extra = pack_round(datasets) if round_index > 0 else {}
        if reference_moved:
            extra.update({f"{REFERENCE_PREFIX}{k}": v for k, v in reference.frozen.state_dict().items()})
        return save_checkpoint(accelerator, run_dir, step, {"step": step, "skipped": skipped}, extra,
                               trainer.keep_checkpoints)

    logged = {}
    try:
        previous = segments[previous_segment][:2] if restored else segments[0][:2]
        for index, (round_index, stage, stage_steps) in enumerate(segments):
            if index < first_segment:
                continue
            if stage is not None:
                if stage != previous[1] and reference is not None and objective.reference == "previous_stage":
                    reference.reset_to_policy()
                    reference_moved = True
                objective.stage = stage
            if round_index != previous[0]:  # a new round: sample the pool from the current policy
                sampling_started = time.perf_counter()
                datasets = round_data(round_index, ModelBundle(policy, bundle.scheduler, bundle.path))
                sampling_s += time.perf_counter() - sampling_started
                if pool_metrics(datasets):
                    tracker.log(pool_metrics(datasets), step)
            previous = (round_index, stage)
            dataset = datasets[stage]
            _check_channels(policy, dataset)
            order = torch.Generator().manual_seed(cfg.seed + index)  # the data order: replayable on resume
            loader = accelerator.prepare(DataLoader(dataset, batch_size=trainer.batch_size, shuffle=True,
                                                    drop_last=True, num_workers=trainer.num_workers,
                                                    generator=order))
            if len(loader) == 0:
                raise ConfigError(f"data.num_samples={len(dataset)} gives no full batch of trainer.batch_size="
                                  f"{trainer.batch_size} per process ({accelerator.num_processes} processes)")
            batches = forever(loader)
            done = step - starts[index]
            for _ in range(done * trainer.gradient_accumulation_steps):  # resume: replay the data order
                next(batches)
            finite = torch.ones((), dtype=torch.bool, device=accelerator.device)
            for _ in range((stage_steps - done) * trainer.gradient_accumulation_steps):
                batch = next(batches)
                with accelerator.accumulate(model), accelerator.autocast():
                    try:
                        loss, metrics = batch_loss(objective, model, reference, process, batch, cfg.hand_aware, shard,
                                                   bundle.family)
                        accelerator.backward(loss)
                    except torch.OutOfMemoryError:
                        raise TrainingError(
                            f"out of memory at step {step + 1} with trainer.batch_size={trainer.batch_size}: lower it "
                            f"and raise trainer.gradient_accumulation_steps (now {trainer.gradient_accumulation_steps}) "
                            "to keep the effective batch, or use LoRA / mixed precision") from None
                    finite = finite & torch.isfinite(loss.detach())
                    window.append({"loss": loss.detach(), **metrics})
                    if accelerator.sync_gradients:
                        norm = accelerator.clip_grad_norm_(trainable, trainer.max_grad_norm or float("inf"))
                        flags = torch.stack([~(finite & torch.isfinite(norm)),
                                             torch.tensor(stop.raised, device=accelerator.device)]).float()
                        bad, preempted = (accelerator.reduce(flags, "sum") > 0).tolist()  # one sync per step
                        if bad:
                            optimizer.zero_grad(set_to_none=True)  # skip: no update, no EMA step
                            window = window[:-trainer.gradient_accumulation_steps]
                        else:
                            optimizer.step()
                        lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                if not accelerator.sync_gradients:
                    continue
                finite = torch.ones((), dtype=torch.bool, device=accelerator.device)
                step += 1
                progress.update(1)
                in_a_row = in_a_row + 1 if bad else 0
                skipped += int(bad)
                if in_a_row >= trainer.max_nonfinite_steps:
                    raise TrainingError(
                        f"{in_a_row} steps in a row with a non-finite loss or gradient (up to step {step}; "
                        f"trainer.max_nonfinite_steps={trainer.max_nonfinite_steps}); stopped. Last good checkpoint: "
                        f"{last_checkpoint or 'none (set trainer.checkpoint_every)'}")
                if ema is not None and not bad:
                    ema.step(trainable)
                if (step % trainer.log_every == 0 or step == trainer.max_steps) and window:
                    logged = {k: accelerator.reduce(torch.stack([m[k] for m in window]).mean(), "mean").item()
                              for k in window[0]}
                    logged.update(lr=lr_scheduler.get_last_lr()[0], elapsed_s=time.perf_counter() - started,
                                  skipped_steps=skipped)
                    if stage is not None:
                        logged["stage"] = stage
                    if trainer.rounds > 1:
                        logged["round"] = round_index
                    tracker.log(logged, step)
                    progress.set_postfix(loss=f"{logged['loss']:.4f}", acc=f"{logged.get('implicit_acc', float('nan')):.2f}")
                    window = []
                if preempted or (trainer.checkpoint_every and step % trainer.checkpoint_every == 0 and not bad):
                    last_checkpoint = checkpoint(round_index)
                if preempted:
                    raise Preempted(f"stopped by SIGTERM at step {step}; checkpoint {last_checkpoint}; "
                                    f"continue with trainer.resume=auto hydra.run.dir={run_dir}")
        accelerator.wait_for_everyone()
        train_s = time.perf_counter() - started - sampling_s
        final_dir = run_dir / "final"
        if ema is not None:
            ema.copy_to(trainable)
        if accelerator.is_main_process:
            save_weights(policy, cfg.lora.enabled, final_dir, bundle)
        summary = {"objective": objective_name, "seed": cfg.seed, "data": cfg.data.name, **budget,
                   "steps": step, "skipped_steps": skipped, "wall_s": time.perf_counter() - started,
                   "final_dir": str(final_dir), **throughput(cfg, step - first_step, train_s, accelerator, memory_at_start),
                   **{k: v for k, v in logged.items() if k != "stage"}}
        if cfg.eval.num_samples and cfg.data.name in SYNTH_HANDS + ANIMATION_DATA and accelerator.is_main_process:
            from prefopt.evaluate import evaluate_against_base, sample_table

            summary["eval"] = evaluate_against_base(cfg, policy, run_dir / "eval")
            tracker.log({f"eval/{who}/{k}": v for who, r in summary["eval"].items() for k, v in r.items()
                         if isinstance(v, float)}, step)
            if tracker.run is not None and cfg.data.name in SYNTH_HANDS:
                tracker.samples("samples", sample_table(cfg, policy))
        accelerator.wait_for_everyone()
        tracker.summary(summary)
        if accelerator.is_main_process:
            (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary
    finally:
        stop.restore()
        progress.close()
        tracker.close()

