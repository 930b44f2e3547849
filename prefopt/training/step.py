"""One optimizer step: its micro-batches (gradient accumulation), clipping, the guards, and the one
host sync per step.

A step whose loss or gradient norm is not finite on any process is skipped (no update, no EMA
step, its metrics dropped); whether any process was asked to stop (SIGTERM) travels in the same
all-reduce, so every process agrees on both with one ``.tolist()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prefopt.errors import TrainingError


@dataclass
class Outcome:
    skipped: bool  # non-finite loss or gradient somewhere: no update
    preempted: bool  # SIGTERM reached a process: checkpoint and stop


class OptimizerStep:
    """``step(batches, loss_of)``: ``gradient_accumulation_steps`` micro-batches, one update."""

    def __init__(self, accelerator, model, optimizer, lr_scheduler, trainable, trainer, window, stop, ema=None):
        self.accelerator, self.model, self.optimizer, self.lr_scheduler = accelerator, model, optimizer, lr_scheduler
        self.trainable, self.trainer, self.window, self.stop, self.ema = trainable, trainer, window, stop, ema

    def __call__(self, batches, loss_of, step: int) -> Outcome:
        """``loss_of(batch) -> (loss, metrics)``; ``step``: the step this one becomes (for messages)."""
        accelerator, accumulation = self.accelerator, self.trainer.gradient_accumulation_steps
        finite = torch.ones((), dtype=torch.bool, device=accelerator.device)
        for _ in range(accumulation):
            with accelerator.accumulate(self.model), accelerator.autocast():
                loss = self._backward(loss_of, next(batches), step)
                finite = finite & torch.isfinite(loss.detach())
                if accelerator.sync_gradients:
                    outcome = self._update(finite)
                self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None and not outcome.skipped:
            self.ema.step(self.trainable)
        return outcome

    def _backward(self, loss_of, batch, step: int) -> torch.Tensor:
        try:
            loss, metrics = loss_of(batch)
            self.accelerator.backward(loss)
        except torch.OutOfMemoryError:
            raise TrainingError(
                f"out of memory at step {step} with trainer.batch_size={self.trainer.batch_size}: lower it "
                f"and raise trainer.gradient_accumulation_steps (now {self.trainer.gradient_accumulation_steps}) "
                "to keep the effective batch, or use LoRA / mixed precision") from None
        self.window.add(loss, metrics)
        return loss

    def _update(self, finite: torch.Tensor) -> Outcome:
        accelerator = self.accelerator
        norm = accelerator.clip_grad_norm_(self.trainable, self.trainer.max_grad_norm or float("inf"))
        flags = torch.stack([~(finite & torch.isfinite(norm)),
                             torch.tensor(self.stop.raised, device=accelerator.device)]).float()
        skipped, preempted = (accelerator.reduce(flags, "sum") > 0).tolist()  # the one sync per step
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)  # no update
            self.window.drop_last(self.trainer.gradient_accumulation_steps)
        else:
            self.optimizer.step()
        self.lr_scheduler.step()
        return Outcome(skipped=bool(skipped), preempted=bool(preempted))
