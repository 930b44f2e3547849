"""The one training loop (loop.py) and its small parts: the plan of segments (plan.py), the data of
each round (rounds.py), the set-up (setup.py), one optimizer step (step.py), the metrics window
(metrics.py), the state a checkpoint keeps (state.py), one batch's loss (batch.py) and how a run
ends (summary.py)."""

from prefopt.training.loop import train

__all__ = ["train"]
