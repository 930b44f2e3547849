"""Metrics for machines: ``metrics.jsonl`` in the run directory (always) and wandb (offline by
default). Each run calls ``wandb.init(reinit="create_new")`` and finishes in ``close`` so runs of a
multirun in one process never mix."""

from __future__ import annotations

import json
from pathlib import Path


class Tracker:
    def __init__(self, logger_cfg, run_dir: Path, config: dict, enabled: bool = True, job_type: str | None = None,
                 tags: list[str] | None = None):
        self.enabled = enabled
        self.run = None
        self.file = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if logger_cfg.backend == "wandb":
            import wandb

            self.run = wandb.init(project=logger_cfg.project, group=logger_cfg.group, job_type=job_type,
                                  tags=[*logger_cfg.tags, *(tags or [])], mode=logger_cfg.mode, dir=str(run_dir),
                                  config=config, reinit="create_new")
        self.file = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")  # after wandb: a refused start leaves nothing

    def log(self, metrics: dict, step: int) -> None:
        if not self.enabled or not metrics:
            return
        self.file.write(json.dumps({"step": step, **metrics}) + "\n")
        self.file.flush()
        if self.run is not None:
            self.run.log(metrics, step=step)

    def samples(self, name: str, rows: list[dict]) -> None:
        """A wandb Table of images (``image``: (3, H, W) in [-1, 1]) and their other columns."""
        import wandb

        columns = list(rows[0])
        table = wandb.Table(columns=columns)
        for row in rows:
            pixels = ((row["image"].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
            table.add_data(*[wandb.Image(pixels) if c == "image" else row[c] for c in columns])
        self.run.log({name: table})

    def summary(self, values: dict) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.run is not None:
            self.run.finish()
