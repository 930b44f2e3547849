"""One optimizer step: accumulation, the skip of a non-finite step, the metrics window, the EMA."""

from __future__ import annotations

import pytest
import torch

from prefopt.checkpoints import SignalFlag
from prefopt.config import TrainerConfig
from prefopt.training.metrics import MetricsWindow
from prefopt.training.step import OptimizerStep


def _setup(accumulation: int, lr: float = 0.1):
    import signal

    from accelerate import Accelerator
    from accelerate.utils import GradientAccumulationPlugin

    from prefopt.launch import release_state

    release_state()
    accelerator = Accelerator(cpu=True, gradient_accumulation_plugin=GradientAccumulationPlugin(
        num_steps=accumulation, sync_with_dataloader=False))
    weight = torch.nn.Parameter(torch.tensor([1.0]))
    model = torch.nn.Linear(1, 1, bias=False)
    model.weight = weight
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    trainer = TrainerConfig(gradient_accumulation_steps=accumulation, max_grad_norm=0.0, warmup_steps=0)
    window = MetricsWindow()
    step = OptimizerStep(accelerator, model, optimizer, scheduler, [weight], trainer, window, SignalFlag(signal.SIGUSR1))
    return step, weight, window, accelerator


def _loss_of(weight):
    """loss = x * w for each micro-batch x: the gradient of the mean over micro-batches is mean(x)."""
    def loss_of(batch):
        return batch * weight.sum(), {"x": batch.detach()}
    return loss_of


def test_accumulated_micro_batches_make_one_update_with_their_mean_gradient():
    step, weight, window, accelerator = _setup(accumulation=2)
    outcome = step(iter([torch.tensor(1.0), torch.tensor(3.0)]), _loss_of(weight), 1)
    assert not outcome.skipped and not outcome.preempted
    assert weight.item() == pytest.approx(1.0 - 0.1 * (1.0 + 3.0) / 2)  # SGD on the mean gradient, by hand
    assert window.reduce(accelerator) == {"loss": pytest.approx((1.0 * 1 + 3.0 * 1) / 2), "x": pytest.approx(2.0)}


def test_a_non_finite_micro_batch_skips_the_update_and_drops_its_metrics():
    step, weight, window, accelerator = _setup(accumulation=2)
    outcome = step(iter([torch.tensor(1.0), torch.tensor(float("nan"))]), _loss_of(weight), 1)
    assert outcome.skipped and weight.item() == 1.0 and not window
    outcome = step(iter([torch.tensor(2.0), torch.tensor(2.0)]), _loss_of(weight), 2)
    assert not outcome.skipped and weight.item() == pytest.approx(1.0 - 0.1 * 2.0)
    assert weight.grad is None  # no gradient carried over from the skipped step
