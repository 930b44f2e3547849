"""``python -m prefopt.validate data=files data.path=<manifest> [objective=dpo]``: read and check
every row of the training data the way ``prefopt.train`` will (same config, same cache), print one
line per bad row and a summary; exit status 1 when a row is bad, 2 on a config error.

Training runs the same check at start-up; its result is cached (prefopt/data/files.py), so a
validated dataset starts without decoding again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def app(cfg: DictConfig) -> None:
    from prefopt.cli import to_config
    from prefopt.data.files import read_manifest

    config = to_config(cfg)
    paired = config.objective.paired
    if config.data.name != "files":
        print(f"data={config.data.name} is made in memory and checked as it is built: no files to validate")
        return
    _, report = read_manifest(config.data, paired)
    for problem in report.problems:
        print(problem)
    print(f"{report.manifest}: {report.rows} rows, {len(report.kept)} valid, {len(report.problems)} bad"
          f"{' (paired)' if paired else ''}")
    if report.problems or not report.kept:
        sys.exit(1)


def main() -> None:
    from prefopt.cli import run_app

    run_app(app, CONF_DIR, "config")


if __name__ == "__main__":
    main()
