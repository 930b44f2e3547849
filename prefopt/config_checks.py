"""The checks of config values, each failing in one line naming the key (prefopt/config.py)."""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass

from prefopt.errors import ConfigError
from prefopt.modules.hand_aware import HandAware


def _one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")


def _positive(key: str, value) -> None:
    if not value > 0:
        raise ConfigError(f"{key} must be > 0, got {value}")


MAX_SEED = 2**32 - 1  # numpy's seeds, which accelerate's set_seed sets too


def _seeds(cfg) -> None:
    for key, value in (("seed", cfg.seed), ("data.seed", cfg.data.seed), ("model.seed", cfg.model.seed),
                       ("eval.seed", cfg.eval.seed)):
        if not 0 <= value <= MAX_SEED:
            raise ConfigError(f"{key} must be a whole number in [0, {MAX_SEED}], got {value}")


def _not_negative(key: str, value) -> None:
    if not value >= 0:
        raise ConfigError(f"{key} must be >= 0, got {value}")


def check_finite(value, key: str = "") -> None:
    """Every number of a config (dataclasses, their dicts and lists, an objective) is finite, else
    one line naming the first key that is not: inf or nan never trains anything."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}")
    if is_dataclass(value):
        names = {"weight": "lambda"} if isinstance(value, HandAware) else {}  # hand_aware.lambda is its weight
        items = [(names.get(f.name, f.name), getattr(value, f.name)) for f in fields(value)]
    elif isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = [(f"{index}", item) for index, item in enumerate(value)]
    else:
        return
    for name, item in items:
        check_finite(item, f"{key}.{name}" if key else str(name))
