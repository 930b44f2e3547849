"""Helpers for tests of the command-line stages: a command's typed config composed from overrides,
and a JSONL file's rows."""

from __future__ import annotations

import json
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from prefopt.cli import CONF_DIR, to_config


def compose(name: str, *overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return to_config(hydra_compose(name, overrides=list(overrides)))


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]
