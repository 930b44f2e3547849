"""Hydra entry point: ``python -m prefopt.train objective=<ipa|dpo|hgdpo|gapo|sft> [...]``.

Before Hydra starts, every job's config (each combination of a ``-m`` sweep) is composed and
validated, so a bad key fails in seconds with one line that names it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from prefopt.cli import check_overrides, to_config
from prefopt.errors import ConfigError
from prefopt.launch import shared_run_dir
from prefopt.paths import CONF_DIR

PREEMPTED_EXIT = 143  # 128 + SIGTERM, what schedulers expect of a job stopped by it


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def app(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from rich.console import Console

    from prefopt.errors import Preempted, TrainingError
    from prefopt.evaluation import build_evaluator
    from prefopt.training import train

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    config = to_config(cfg)
    if hydra_cfg.mode == RunMode.MULTIRUN and config.logger.group is None:
        config.logger.group = Path(hydra_cfg.sweep.dir).name  # one wandb group per sweep
    try:
        summary = train(config, run_dir, OmegaConf.to_container(cfg, resolve=True))
    except ConfigError as error:
        sys.stderr.write(f"prefopt: error: {error}\n")
        sys.exit(2)
    except TrainingError as error:
        sys.stderr.write(f"prefopt: {'preempted' if isinstance(error, Preempted) else 'error'}: {error}\n")
        sys.exit(PREEMPTED_EXIT if isinstance(error, Preempted) else 1)
    if int(os.environ.get("RANK", "0")) == 0:  # the launcher's rank (accelerate's state is released by now)
        console = Console(soft_wrap=True)
        console.print(f"[bold]{type(config.objective).__name__}[/bold] {summary['steps']} steps "
                      f"in {summary['wall_s']:.1f} s, loss {summary['loss']:.4f}; run dir {run_dir}")
        for result in summary.get("eval", {}).values():
            console.print(build_evaluator(config.eval).describe(result), highlight=False)
    return summary["loss"]


def main() -> None:
    check_overrides(CONF_DIR, sys.argv[1:])
    sys.argv[1:] = shared_run_dir(sys.argv[1:])
    app()


if __name__ == "__main__":
    main()
