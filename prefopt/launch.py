"""The accelerate runtime a run lives in: its Accelerator (checked against what the launcher
started), one run dir for all processes, and accelerate's process-wide state released after it."""

from __future__ import annotations

import logging
import os
import time

from prefopt.errors import ConfigError

log = logging.getLogger("prefopt")


def make_accelerator(trainer):
    """``trainer``: a TrainerConfig. Fails in one line when the launcher's processes did not join
    one group (``accelerate launch --cpu --num_processes 2``: N lone copies into one run dir)."""
    from accelerate import Accelerator
    from accelerate.utils import GradientAccumulationPlugin

    accelerator = Accelerator(
        mixed_precision=trainer.mixed_precision, cpu=trainer.cpu, dynamo_backend=trainer.compile,
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=trainer.gradient_accumulation_steps, sync_with_dataloader=False))
    log.info("accelerate: %s, %d process(es), mixed precision %s, device %s", accelerator.distributed_type.value,
             accelerator.num_processes, accelerator.mixed_precision, accelerator.device)
    _check_joined(accelerator.num_processes)
    return accelerator


def _check_joined(joined: int) -> None:
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != joined:
        raise ConfigError(f"the launcher started {launched} processes but accelerate joined {joined}; "
                          f"on CPU use ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes {launched}")


def partial_state():
    """accelerate's PartialState (devices and process group, no training state) for commands that
    only share work among processes (prefopt.generate); checked against the launcher like a run's."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    _check_joined(state.num_processes)
    return state


def release_state() -> None:
    """accelerate keeps its state in process-wide singletons; forget it (not the process group) so
    the next run of a multirun in this process may choose another mixed precision or accumulation."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


def shared_run_dir(argv: list[str]) -> list[str]:
    """Under ``accelerate launch`` every process must write to the same run dir (hydra#2070): unless
    the command names it, rank 0's timestamp, broadcast, makes Hydra's default ``outputs/<day>/<time>``."""
    multirun = "-m" in argv or "--multirun" in argv
    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or multirun or any(a.startswith("hydra.run.dir=") for a in argv):
        return argv
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list, parse_flag_from_env

    # joins the launcher's process group; as Accelerator() would, read ACCELERATE_USE_CPU (else: one process)
    PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    stamp = broadcast_object_list([time.strftime("%Y-%m-%d/%H-%M-%S")])[0]
    return [*argv, f"hydra.run.dir=outputs/{stamp}"]
