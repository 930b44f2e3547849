"""Hydra entry point: ``python -m prefopt.train objective=<ipa|dpo|hgdpo|gapo|sft> [...]``.

Before Hydra starts, every job's config (each combination of a ``-m`` sweep) is composed and
validated, and the run dir checked (writable, no other process running in it), so a bad key fails
in seconds with one line that names it.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from prefopt.cli import one_line_errors, start_up, to_config
from prefopt.launch import shared_run_dir
from prefopt.paths import CONF_DIR

PREEMPTED_EXIT = 143  # 128 + SIGTERM, what schedulers expect of a job stopped by it


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def app(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from prefopt.errors import Preempted, TrainingError
    from prefopt.training import train

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    config = to_config(cfg)
    if hydra_cfg.mode == RunMode.MULTIRUN and config.logger.group is None:
        config.logger.group = Path(hydra_cfg.sweep.dir).name  # one wandb group per sweep
    try:
        with one_line_errors(str(run_dir)):
            summary = train(config, run_dir, OmegaConf.to_container(cfg, resolve=True))
    except TrainingError as error:
        sys.stderr.write(f"prefopt: {'preempted' if isinstance(error, Preempted) else 'error'}: {error}\n")
        sys.exit(PREEMPTED_EXIT if isinstance(error, Preempted) else 1)
    if int(os.environ.get("RANK", "0")) == 0:  # the launcher's rank (accelerate's state is released by now)
        _print_summary(config, summary, run_dir)
    return summary.get("loss", math.nan)


def _print_summary(config, summary: dict, run_dir: Path) -> None:
    from rich.console import Console

    from prefopt.evaluation import build_evaluator

    console = Console(soft_wrap=True)
    loss = f"loss {summary['loss']:.4f}" if "loss" in summary else "no step this time (the run had ended)"
    console.print(f"[bold]{type(config.objective).__name__}[/bold] {summary['steps']} steps "
                  f"in {summary['wall_s']:.1f} s, {loss}; run dir {run_dir}")
    for result in summary.get("eval", {}).values():
        console.print(build_evaluator(config.eval).describe(result), highlight=False)


def main() -> None:
    start_up(sys.argv[1:], "config", locked=True)
    sys.argv[1:] = shared_run_dir(sys.argv[1:])
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # Hydra's own errors (its run dir) reach the line below
    with one_line_errors():
        app()


if __name__ == "__main__":
    main()
