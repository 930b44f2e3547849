"""Start-up validation shared by the command-line entry points: compose the config of every job a
command line asks for and turn any error into one line that names the key."""

from __future__ import annotations

import itertools
import os
import sys

from omegaconf import DictConfig, OmegaConf

from prefopt.config import Config
from prefopt.paths import CONF_DIR

MAX_CHECKED_JOBS = 256


def to_config(cfg: DictConfig) -> Config:
    """The typed config (objective instantiated); raises ValueError naming a bad key."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    return OmegaConf.to_object(plain)


def describe(error: BaseException) -> str:
    """One line naming the culprit for any config error from Hydra, OmegaConf or our checks."""
    from hydra.errors import MissingConfigException

    if isinstance(error, MissingConfigException) and error.options:
        group = (error.missing_cfg_file or "").rpartition("/")[0]
        option = (error.missing_cfg_file or "").rpartition("/")[2]
        return f"{group}={option}: no such option (available: {', '.join(sorted(error.options))})"
    cause = error
    while cause.__cause__ is not None and not getattr(cause, "full_key", None):
        cause = cause.__cause__
    message = (getattr(cause, "msg", None) or str(cause)).strip().splitlines()
    first = message[0] if message else type(cause).__name__
    key = getattr(cause, "full_key", None)
    return f"{key}: {first}" if key else first


def _jobs(overrides: list[str]) -> list[list[str]]:
    """Every job of a (multi)run: sweeps like ``objective=ipa,dpo`` expanded to their product."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for override in parsed:
        if not override.is_sweep_override():
            choices.append([override.input_line])
        elif override.is_discrete_sweep() and override.value_type != ValueType.GLOB_CHOICE_SWEEP:
            choices.append([f"{override.get_key_element()}={v}" for v in override.sweep_string_iterator()])
        # else: not enumerable here (glob needs the config loader; intervals are for optuna/ax sweepers)
    return [list(job) for job in itertools.islice(itertools.product(*choices), MAX_CHECKED_JOBS)]


def check_overrides(conf_dir: str, argv: list[str], config_name: str = "config") -> None:
    """Exit with one line on stderr if any job's config is invalid; Hydra's own flags are left to it."""
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return
    overrides = [a for a in argv if not a.startswith("-") and not a.startswith("hydra")]
    from hydra import compose, initialize_config_dir

    try:
        jobs = _jobs(overrides)
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            for job in jobs:
                to_config(compose(config_name, overrides=job))
    except Exception as error:  # noqa: BLE001 - every config error becomes one line
        sys.stderr.write(f"prefopt: config error: {describe(error)}\n")
        sys.exit(2)


def run_app(app, conf_dir: str, config_name: str) -> None:
    """An entry point's ``main``: validate the command line, run the Hydra ``app``, and turn a
    ConfigError raised while running into one line and exit status 2."""
    from prefopt.errors import ConfigError

    check_overrides(conf_dir, sys.argv[1:], config_name=config_name)
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # errors reach the except below instead of Hydra's report
    try:
        app()
    except ConfigError as error:
        sys.stderr.write(f"prefopt: error: {error}\n")
        sys.exit(2)


def command(config_name: str, run):
    """The ``main`` of a ``python -m prefopt.<command>`` whose Hydra config is ``conf/<config_name>.yaml``:
    ``run`` gets the typed config; a bad key or a ConfigError is one line and exit status 2."""
    import hydra

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)
    def app(cfg: DictConfig) -> None:
        run(to_config(cfg))

    def main() -> None:
        run_app(app, CONF_DIR, config_name)

    return main
