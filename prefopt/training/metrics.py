"""The metrics window: the micro-batches' metrics since the last log, kept on the device (no host
sync per step) and averaged over them and over every process when a log is due."""

from __future__ import annotations

import torch


class MetricsWindow:
    def __init__(self):
        self.rows: list[dict[str, torch.Tensor]] = []

    def add(self, loss: torch.Tensor, metrics: dict) -> None:
        self.rows.append({"loss": loss.detach(), **metrics})

    def drop_last(self, count: int) -> None:
        """Forget the last ``count`` micro-batches (a skipped step's)."""
        del self.rows[len(self.rows) - count:]

    def reduce(self, accelerator) -> dict[str, float]:
        """Each metric's mean over the window and the processes; the window then starts anew."""
        means = {key: accelerator.reduce(torch.stack([row[key] for row in self.rows]).mean(), "mean").item()
                 for key in self.rows[0]}
        self.rows = []
        return means

    def __bool__(self) -> bool:
        return bool(self.rows)
