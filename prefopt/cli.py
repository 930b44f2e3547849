"""Start-up validation shared by the command-line entry points: compose the config of every job a
command line asks for and turn any error of the user's input into one line that names the key (or
the file, or the folder) and exit status 2. An error that is not the user's (a bug) keeps its
traceback."""

from __future__ import annotations

import itertools
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from prefopt.config import Config
from prefopt.errors import ConfigError, first_line, storage_message
from prefopt.paths import CONF_DIR, check_writable

MAX_CHECKED_JOBS = 256
USER_ERROR_EXIT = 2


def to_config(cfg: DictConfig) -> Config:
    """The typed config (objective instantiated); raises ValueError naming a bad key."""
    if "hydra" in cfg:  # a copy keeps the schema (a masked copy would not)
        cfg = cfg.copy()
        with open_dict(cfg):
            del cfg["hydra"]
    return OmegaConf.to_object(cfg)


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and what caused it, outermost first."""
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__  # OmegaConf hides our ConfigError in a suppressed context
    return chain


def user_error(error: BaseException) -> bool:
    """Whether a config error is the user's: a ConfigError of our checks, or Hydra's or OmegaConf's
    own refusal of a value, a key or an option. An exception our code raised by mistake (a TypeError
    in a check, ...) is not, however OmegaConf wraps it."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    chain = _chain(error)
    if any(isinstance(link, ConfigError) for link in chain):
        return True
    innermost = chain[-1]
    if isinstance(innermost, HydraException | OmegaConfBaseException):
        return True
    frames = traceback.extract_tb(innermost.__traceback__)
    return bool(frames) and any(f"{os.sep}{package}{os.sep}" in frames[-1].filename for package in ("omegaconf", "hydra"))


def describe(error: BaseException) -> str:
    """One line naming the culprit for any config error from Hydra, OmegaConf or our checks."""
    from hydra.errors import MissingConfigException

    if isinstance(error, MissingConfigException) and error.options:
        group = (error.missing_cfg_file or "").rpartition("/")[0]
        option = (error.missing_cfg_file or "").rpartition("/")[2]
        return f"{group}={option}: no such option (available: {', '.join(sorted(error.options))})"
    ours = next((link for link in _chain(error) if isinstance(link, ConfigError)), None)
    if ours is not None:  # our checks' messages name their key
        return " ".join(str(ours).split())
    cause = error
    while cause.__cause__ is not None and not getattr(cause, "full_key", None):
        cause = cause.__cause__
    message = (getattr(cause, "msg", None) or str(cause)).strip().splitlines()
    first = message[0] if message else type(cause).__name__
    key = getattr(cause, "full_key", None)
    return f"{key}: {first}" if key else first


def fail(message: str, kind: str = "error") -> None:
    """One line on stderr, exit status 2 (the user's input)."""
    sys.stderr.write(f"prefopt: {kind}: {' '.join(message.split())}\n")
    sys.exit(USER_ERROR_EXIT)


def out_of_memory(error: BaseException) -> str | None:
    """One line when the host ran out of memory for what the config asked (torch's CPU allocator,
    Python's own); a GPU's is the training step's (prefopt/training/step.py)."""
    if not (isinstance(error, MemoryError) or "can't allocate memory" in str(error)):
        return None
    reason = first_line(error).split("DefaultCPUAllocator: ")[-1][:160]
    return (f"out of memory ({reason}); lower what the config asks for at once (data.image_size, "
            "data.num_samples, trainer.batch_size, eval.num_samples) or use a machine with more memory")


def logger_refusal(error: BaseException) -> str | None:
    """One line when wandb (if this process loaded it) refused to start a run: no API key for
    ``logger.mode=online``, a key it rejects."""
    wandb = sys.modules.get("wandb")
    errors = getattr(wandb, "errors", None)
    if errors is None or not isinstance(error, errors.UsageError | errors.AuthenticationError):
        return None
    return (f"logger: wandb refused to start ({first_line(error)}); run `wandb login` or set WANDB_API_KEY, or log "
            "offline (logger.mode=offline, the default) or not at all (logger=none)")


@contextmanager
def one_line_errors(where: str | None = None):
    """A ConfigError, a write the filesystem refused for a reason the user can fix (a full disk, a
    folder that cannot be written: its path, else ``where``), or the logger's refusal to start ends
    the command in one line and exit status 2; any other error keeps its traceback."""
    try:
        yield
    except ConfigError as error:
        fail(str(error))
    except Exception as error:  # noqa: BLE001 - only the user's are caught, the rest re-raised
        message = storage_message(error, where) or out_of_memory(error) or logger_refusal(error)
        if message is None:
            raise
        fail(message)


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


def validate_job(config_name: str, overrides: list[str]):
    """One job's start-up validation (inside Hydra's initialization): its typed config."""
    from hydra import compose

    return to_config(compose(config_name, overrides=overrides))


def check_overrides(conf_dir: str, argv: list[str], config_name: str = "config") -> DictConfig | None:
    """Exit with one line on stderr if any job's config is invalid (a bug's error is re-raised); Hydra's
    own flags are left to it. Returns the first job's composed config."""
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return None
    overrides = [a for a in argv if not a.startswith("-") and not a.startswith("hydra")]
    from hydra import compose, initialize_config_dir

    try:
        jobs = _jobs(overrides)
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            for job in jobs:
                validate_job(config_name, job)
            return compose(config_name, overrides=jobs[0], return_hydra_config=True) if jobs else None
    except Exception as error:  # noqa: BLE001 - the user's config errors become one line, a bug's is re-raised
        if not user_error(error):
            raise
        fail(describe(error), "config error")


def check_run_dir(argv: list[str], composed: DictConfig | None, locked: bool) -> None:
    """Before Hydra writes into it: the run dir (``hydra.run.dir``; ``hydra.sweep.dir`` with ``-m``) can
    be written, and, for a command that trains (``locked``), no other process is running in it."""
    from prefopt.checkpoints import in_use_message, run_dir_in_use

    multirun = "-m" in argv or "--multirun" in argv
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = next((a.split("=", 1)[1] for a in argv if a.startswith(f"{key}=")), None)
    folder = given or (OmegaConf.select(composed, key, default=None) if composed is not None else None) or "outputs"
    check_writable(Path(folder), key, f"choose a folder you can write with {key}=...")
    if locked and given and not multirun and int(os.environ.get("RANK", "0")) == 0 and run_dir_in_use(Path(given)):
        raise ConfigError(in_use_message(Path(given)))


def start_up(argv: list[str], config_name: str, locked: bool) -> None:
    """Every check a command line gets before Hydra starts: its jobs' configs and its run dir."""
    composed = check_overrides(CONF_DIR, argv, config_name=config_name)
    with one_line_errors():
        check_run_dir(argv, composed, locked)


def run_app(app, conf_dir: str, config_name: str, locked: bool = False) -> None:
    """An entry point's ``main``: validate the command line, run the Hydra ``app``, and turn an error
    of the user's input raised while running into one line and exit status 2."""
    start_up(sys.argv[1:], config_name, locked)
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # errors reach the except below instead of Hydra's report
    with one_line_errors():
        app()


def output_dir() -> str:
    """The running Hydra job's output folder."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir


def command(config_name: str, run, locked: bool = False):
    """The ``main`` of a ``python -m prefopt.<command>`` whose Hydra config is ``conf/<config_name>.yaml``:
    ``run`` gets the typed config; a bad key, a ConfigError or a refused write is one line and exit
    status 2. ``locked``: the command trains in its run dir, which a second process may not share."""
    import hydra

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)
    def app(cfg: DictConfig) -> None:
        with one_line_errors(output_dir()):
            run(to_config(cfg))

    def main() -> None:
        run_app(app, CONF_DIR, config_name, locked)

    return main
