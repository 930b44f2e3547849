"""How a run ends: the final weights, the evaluation the config chose (prefopt/evaluation), and
``summary.json`` (the budget, steps, speed, the last metrics, the evaluation)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import torch

from prefopt.checkpoints import close_run
from prefopt.errors import TrainingError
from prefopt.io import write_json
from prefopt.models import build_model, save_weights


class Clock:
    """Training time without the rounds' sampling, and on CUDA the memory training adds."""

    def __init__(self, accelerator):
        self.accelerator, self.started, self.sampling_s = accelerator, time.perf_counter(), 0.0
        self.memory_at_start = None
        if accelerator.device.type == "cuda":  # the training's peak, above what the model and optimizer hold at its start
            torch.cuda.reset_peak_memory_stats(accelerator.device)
            self.memory_at_start = torch.cuda.memory_allocated(accelerator.device)

    @contextmanager
    def sampling(self):
        """Time spent re-sampling a round's data: not training throughput."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.sampling_s += time.perf_counter() - started

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def throughput(self, cfg, steps: int) -> dict:
        """Speed of this process's ``steps``: ``images_per_s`` counts every image through the policy,
        all processes together (a pair is 2, so a paired step on B pairs and SFT on 2B images compare
        directly); on CUDA ``peak_memory_mib`` (``max_memory_allocated`` during training) and
        ``start_memory_mib`` (allocated as training began: the model, its frozen copy, the optimizer)."""
        seconds = self.elapsed() - self.sampling_s
        images = (steps * cfg.trainer.batch_size * cfg.trainer.gradient_accumulation_steps
                  * self.accelerator.num_processes * (2 if cfg.objective.paired else 1))
        out = {"train_s": seconds, "images_per_s": images / seconds if seconds else 0.0}
        if self.memory_at_start is not None:
            out.update(peak_memory_mib=torch.cuda.max_memory_allocated(self.accelerator.device) / 2**20,
                       start_memory_mib=self.memory_at_start / 2**20)
        return out


def evaluate(cfg, policy, run_dir: Path, tracker, step: int) -> dict:
    """The evaluation ``cfg.eval`` chose, base against trained (main process); {} when none."""
    from prefopt.evaluation import against_base, build_evaluator

    evaluator = build_evaluator(cfg.eval)
    if evaluator is None:
        return {}
    base = build_model(cfg.model)
    results = against_base(evaluator, base, policy, run_dir / "eval")
    tracker.log({f"eval/{who}/{k}": v for who, r in results.items() for k, v in r.items() if isinstance(v, float)}, step)
    if tracker.run is not None and hasattr(evaluator, "table"):
        tracker.samples("samples", [{"model": who, **row} for who, denoiser in (("base", base.denoiser),
                                                                                  ("aligned", policy))
                                    for row in evaluator.table(denoiser, base.scheduler)])
    return {"eval": results}


def finish(cfg, run, state, first_step: int, logged: dict, budget: dict, clock: Clock, tracker, run_dir: Path) -> dict:
    """Save the final weights (the EMA's when kept), evaluate, write ``summary.json``."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    if state.step > first_step and state.skipped == state.step:
        raise TrainingError(f"every one of the {state.step} steps had a non-finite loss or gradient and was skipped; "
                            "nothing was trained (check objective.beta, trainer.learning_rate and the data)")
    speed = clock.throughput(cfg, state.step - first_step)
    final_dir = run_dir / "final"
    if run.ema is not None:
        run.ema.copy_to(run.trainable)
    if accelerator.is_main_process:
        save_weights(run.policy, cfg.lora.enabled, final_dir, run.bundle)
    objective_name = type(cfg.objective).__name__.lower()
    summary = {"objective": objective_name, "seed": cfg.seed, "data": cfg.data.name, **budget, "steps": state.step,
               "skipped_steps": state.skipped, "wall_s": clock.elapsed(), "final_dir": str(final_dir), **speed,
               **{k: v for k, v in logged.items() if k != "stage"}}
    if accelerator.is_main_process:
        summary.update(evaluate(cfg, run.policy, run_dir, tracker, state.step))
    accelerator.wait_for_everyone()
    tracker.summary(summary)
    if accelerator.is_main_process:
        write_json(run_dir / "summary.json", summary)
    close_run(run_dir)
    return summary
