"""The one training loop every objective uses: set up, plan, loop over segments, step, log,
checkpoint, finish.

Per optimizer step: a batch of winners (and losers) is noised once (pairs share noise and t), the
policy runs with grad and the reference without, in one batched forward each; the segment's
objective turns the per-sample errors into ``(loss, metrics)`` (training/batch.py).
"""

from __future__ import annotations

import signal
from functools import partial
from pathlib import Path

from prefopt.checkpoints import SignalFlag, close_run
from prefopt.config import Config
from prefopt.data.sampler import loader
from prefopt.errors import ConfigError, Preempted, TrainingError
from prefopt.launch import release_state
from prefopt.models import build_model
from prefopt.tracking import Tracker
from prefopt.training.batch import batch_loss, forever
from prefopt.training.metrics import MetricsWindow
from prefopt.training.plan import plan, resume_point
from prefopt.training.rounds import Rounds, check_channels, pool_metrics
from prefopt.training.setup import WEIGHT_DTYPES, prepare, start
from prefopt.training.state import TrainState
from prefopt.training.step import OptimizerStep
from prefopt.training.summary import Clock, finish


def train(cfg: Config, run_dir: Path, config_dict: dict | None = None) -> dict:
    """Train ``cfg.objective``; write checkpoints, ``metrics.jsonl`` and ``summary.json`` under ``run_dir``.

    Guards: a step whose loss or gradient is not finite is skipped (no update) and counted;
    ``trainer.max_nonfinite_steps`` in a row stop the run, leaving the last checkpoint as it was.
    SIGTERM (preemption) writes a checkpoint at the end of the current step and stops
    (:class:`Preempted`); ``trainer.resume=auto`` continues from the newest checkpoint that loads.
    However it ends, accelerate's process-wide state is released for the next run in this process."""
    try:
        return _train(cfg, run_dir, config_dict or {})
    finally:
        close_run(run_dir)  # the run dir's lock
        release_state()


def _train(cfg: Config, run_dir: Path, config_dict: dict) -> dict:
    from tqdm.auto import tqdm

    (accelerator, settings), trainer = start(cfg, run_dir), cfg.trainer
    segments = plan(cfg.objective, trainer.max_steps, trainer.rounds)
    bundle = build_model(cfg.model)
    rounds = Rounds(cfg, accelerator, bundle, segments, WEIGHT_DTYPES[trainer.mixed_precision])
    datasets = rounds.build(0, bundle)  # before LoRA: round 0 samples the base model
    run = prepare(cfg, accelerator, bundle)
    state, datasets = TrainState.resume(accelerator, run_dir, trainer.resume, datasets, run.reference, settings)
    first, current = resume_point(segments, state.step)
    first_step, logged = state.step, {}
    tracker = _tracker(cfg, run_dir, config_dict, accelerator.is_main_process)
    if state.step == 0:
        tracker.log(pool_metrics(datasets), 0)
    window, stop, clock = MetricsWindow(), SignalFlag(signal.SIGTERM), Clock(accelerator)
    optimizer_step = OptimizerStep(accelerator, run.model, run.optimizer, run.lr_scheduler, run.trainable, trainer,
                                   window, stop, run.ema)
    progress = tqdm(total=trainer.max_steps, initial=state.step, disable=not accelerator.is_main_process,
                    desc=type(cfg.objective).__name__)
    try:
        for segment in segments[first:]:
            datasets = _enter(segment, current, run, rounds, datasets, state, tracker, clock)
            current = segment.key
            batches = _batches(cfg, run, datasets[segment.stage], segment, state.step)
            loss_of = partial(batch_loss, segment.objective, run.model, run.reference, run.process,
                              hand_aware=cfg.hand_aware, shard=run.shard, family=bundle.family)
            while state.step < segment.start + segment.steps:
                outcome = optimizer_step(batches, loss_of, state.step + 1)
                state.count(outcome.skipped)
                progress.update(1)
                _guard(state, trainer.max_nonfinite_steps)
                if (state.step % trainer.log_every == 0 or state.step == trainer.max_steps) and window:
                    logged = _log(window, segment, run, state, clock, tracker, trainer.rounds)
                    progress.set_postfix(loss=f"{logged['loss']:.4f}", acc=f"{logged.get('implicit_acc', float('nan')):.2f}")
                every = trainer.checkpoint_every
                if outcome.preempted or (every and state.step % every == 0 and not outcome.skipped):
                    state.save(accelerator, run_dir, trainer.keep_checkpoints, datasets, segment.round, run.reference)
                if outcome.preempted:
                    raise Preempted(f"stopped by SIGTERM at step {state.step}; checkpoint {state.last_checkpoint}; "
                                    f"continue with trainer.resume=auto hydra.run.dir={run_dir}")
        return finish(cfg, run, state, first_step, logged, rounds.budget, clock, tracker, run_dir)
    finally:
        stop.restore()
        progress.close()
        tracker.close()


def _tracker(cfg: Config, run_dir: Path, config_dict: dict, enabled: bool) -> Tracker:
    name = type(cfg.objective).__name__.lower()
    return Tracker(cfg.logger, run_dir, config_dict, enabled=enabled, job_type=name,
                   tags=[name, f"data={cfg.data.name}", f"seed={cfg.seed}"])


def _enter(segment, current, run, rounds, datasets: dict, state: TrainState, tracker, clock) -> dict:
    """Cross into ``segment`` from the (round, stage) the run is in: a new stage may move HG-DPO's
    reference to the current policy; a new round samples its data from the current policy."""
    objective = segment.objective
    if (segment.stage != current[1] and run.reference is not None
            and getattr(objective, "reference", "base") == "previous_stage"):
        run.reference.reset_to_policy()
        state.reference_moved = True
    if segment.round != current[0]:
        with clock.sampling():
            datasets = rounds.build(segment.round, run.sampler())
        tracker.log(pool_metrics(datasets), state.step)
    return datasets


def _batches(cfg: Config, run, dataset, segment, step: int):
    """The segment's batches in a replayable order (seed + segment index). A resumed segment starts
    where its done steps left the order: the sampler skips to it, no batch is loaded to get there."""
    check_channels(run.policy, dataset)
    accelerator, trainer, seed = run.accelerator, cfg.trainer, cfg.seed + segment.index
    per_epoch = len(accelerator.prepare(loader(dataset, trainer.batch_size, seed)))
    if per_epoch == 0:
        raise ConfigError(f"data.num_samples={len(dataset)} gives no full batch of trainer.batch_size="
                          f"{trainer.batch_size} per process ({accelerator.num_processes} processes)")
    done = max(0, step - segment.start) * trainer.gradient_accumulation_steps  # batches this process drew
    return forever(accelerator.prepare(loader(dataset, trainer.batch_size, seed, done, per_epoch,
                                              accelerator.num_processes, trainer.num_workers)))


def _guard(state: TrainState, limit: int) -> None:
    if state.skipped_in_a_row >= limit:
        raise TrainingError(
            f"{state.skipped_in_a_row} steps in a row with a non-finite loss or gradient (up to step {state.step}; "
            f"trainer.max_nonfinite_steps={limit}); stopped. Last good checkpoint: "
            f"{state.last_checkpoint or 'none (set trainer.checkpoint_every)'}")


def _log(window, segment, run, state: TrainState, clock, tracker, rounds: int) -> dict:
    logged = window.reduce(run.accelerator)
    logged.update(lr=run.lr_scheduler.get_last_lr()[0], elapsed_s=clock.elapsed(), skipped_steps=state.skipped)
    if segment.stage is not None:
        logged["stage"] = segment.stage
    if rounds > 1:
        logged["round"] = segment.round
    tracker.log(logged, state.step)
    return logged
