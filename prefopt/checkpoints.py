"""Checkpoints that survive crashes, and the run directory's guard.

A checkpoint is ``<run>/checkpoints/step_<N>/``: accelerate's ``save_state`` (model, optimizer, LR
scheduler, EMA, every process's RNG states) plus ``trainer_state.json`` (step, skipped steps) and
``extra.safetensors`` (what the loop cannot rebuild: a round's model-made data, a moved reference).
It is written under ``.tmp-step_<N>``, every file fsync'ed, then renamed: a crash mid-write leaves
a temporary folder that resume ignores and removes, never a half checkpoint. The newest ``keep``
checkpoints are kept. Resume loads the newest checkpoint that loads; a damaged one is reported in
one line and the one before it is used. Also here: the SIGTERM flag the loop checks at each step's
end, the packing of a round's datasets into a checkpoint, and the trimming of ``metrics.jsonl`` to
the step a run resumes from.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import threading
from pathlib import Path

import torch

from prefopt.data import PreferenceDataset
from prefopt.data.preference import flatten, unflatten
from prefopt.errors import ConfigError, StorageError
from prefopt.io import filesystem_error, fsync_tree, write_text

log = logging.getLogger("prefopt")
PREFIX, TMP_PREFIX = "step_", ".tmp-step_"
RUN_OUTPUTS = ("metrics.jsonl", "checkpoints", "final", "eval")  # what a finished or started run leaves


def guard_run_dir(run_dir: Path, resume: str, overwrite: bool, remove: bool = True) -> None:
    """Never overwrite an earlier run's outputs unless ``trainer.overwrite=true`` (then only the
    process with ``remove`` deletes them; every process raises alike)."""
    found = [name for name in RUN_OUTPUTS if holds_output(run_dir / name)]
    if not found or (resume == "auto" and checkpoint_dirs(run_dir)) or resume not in ("none", "auto"):
        return
    if not overwrite:
        hint = ("it has no checkpoint to resume from; " if resume == "auto" else
                "continue it with trainer.resume=auto or ")
        raise ConfigError(f"trainer.overwrite: {run_dir} already holds a run ({', '.join(found)}); "
                          f"{hint}replace it with trainer.overwrite=true")
    for name in found if remove else []:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


_LOCKS: dict[Path, int | None] = {}  # run dir -> the descriptor holding its flock (main process), else None


def open_run(run_dir: Path, lock: bool) -> None:
    """Hold ``run_dir`` for a run; with ``lock`` (the main process) an ``flock`` on the folder, held
    until :func:`close_run`, so that a second process on the same run dir is refused in one line. A
    run of this process that ended without :func:`close_run` (it raised) still holds the lock, which
    passes to this one."""
    key = run_dir.resolve()
    if lock and _LOCKS.get(key) is None:
        _LOCKS[key] = _lock(run_dir)
    else:
        _LOCKS.setdefault(key, None)


def close_run(run_dir: Path) -> None:
    """The run in ``run_dir`` ended: release its lock."""
    descriptor = _LOCKS.pop(run_dir.resolve(), None)
    if descriptor is not None:
        os.close(descriptor)  # closing the folder's descriptor releases its flock


def _lock(run_dir: Path) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise ConfigError(in_use_message(run_dir)) from None
    return descriptor


def in_use_message(run_dir: Path) -> str:
    return (f"hydra.run.dir: another prefopt process is running in {run_dir}; wait for it to end (or stop it), "
            "or choose another hydra.run.dir")


def run_dir_in_use(run_dir: Path) -> bool:
    """Whether another process holds ``run_dir``'s lock (looked at, not taken)."""
    if not run_dir.is_dir():
        return False
    descriptor = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def saved_settings(candidates: list[Path]) -> dict | None:
    """The settings of the first checkpoint of ``candidates`` whose ``trainer_state.json`` reads and
    records them; None when none does (no checkpoint, or one from an older prefopt)."""
    for path in candidates:
        try:
            state = json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and isinstance(state.get("config"), dict):
            return state["config"]
    return None


def holds_output(path: Path) -> bool:
    """An output of a run; an empty file (metrics.jsonl of a start that failed before logging) is none."""
    return path.is_dir() or (path.is_file() and path.stat().st_size > 0)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def save_checkpoint(accelerator, run_dir: Path, step: int, state: dict, extra: dict[str, torch.Tensor],
                    keep: int) -> Path:
    """Write checkpoint ``step`` atomically (all processes call this); prune to the newest ``keep``.
    A write the filesystem refuses (a full disk) removes the temporary folder and stops in one line;
    the checkpoints before it stay as they were."""
    root = run_dir / "checkpoints"
    tmp, final = root / f"{TMP_PREFIX}{step}", root / f"{PREFIX}{step}"
    try:
        _write_checkpoint(accelerator, tmp, state, extra)
    except Exception as error:  # noqa: BLE001 - the filesystem's refusal becomes one line, anything else is re-raised
        refused = filesystem_error(error, root)  # before the temporary folder's removal frees the space
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        if refused is None:
            raise
        previous = checkpoint_dirs(run_dir)
        kept = f"the last one, {previous[-1]}, is intact" if previous else "no earlier checkpoint"
        raise StorageError(f"checkpoint {final} could not be written ({refused.strerror}); {kept}; free space on "
                           f"{root} and rerun with trainer.resume=auto") from error
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_tree(root)
        for old in checkpoint_dirs(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _write_checkpoint(accelerator, tmp: Path, state: dict, extra: dict[str, torch.Tensor]) -> None:
    """Every file of a checkpoint in ``tmp``, flushed to disk."""
    from safetensors.torch import save_file

    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if extra:
            save_file({k: v.contiguous().cpu() for k, v in extra.items()}, tmp / "extra.safetensors")
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        fsync_tree(tmp)


def load_latest(accelerator, run_dir: Path, resume: str) -> tuple[dict, dict[str, torch.Tensor], Path] | None:
    """Restore the newest loadable checkpoint (``resume=auto``) or the given one: (state, extra, path);
    None when ``auto`` finds none."""
    from safetensors.torch import load_file

    if resume == "auto":
        if accelerator.is_main_process:
            for leftover in (run_dir / "checkpoints").glob(f"{TMP_PREFIX}*"):
                shutil.rmtree(leftover, ignore_errors=True)  # a write that never finished
        candidates = checkpoint_dirs(run_dir)[::-1]
        if not candidates:
            return None
    else:
        candidates = [Path(resume)]
        if not (candidates[0] / "trainer_state.json").is_file():
            raise ConfigError(f"trainer.resume: {resume} is not a prefopt checkpoint (no trainer_state.json)")
    for path in candidates:
        try:
            state = json.loads((path / "trainer_state.json").read_text())
            extra = load_file(path / "extra.safetensors") if (path / "extra.safetensors").exists() else {}
            accelerator.load_state(str(path))
            return state, extra, path
        except Exception as error:  # noqa: BLE001 - any damage: report it, fall back to the previous one
            log.warning("checkpoint %s does not load (%s: %s); trying the previous one",
                        path, type(error).__name__, str(error).splitlines()[0] if str(error) else "")
    raise ConfigError(f"trainer.resume: no checkpoint under {run_dir / 'checkpoints'} loads")


class SignalFlag:
    """Remember that ``signum`` arrived (the loop checks at each step's end); restore on exit."""

    def __init__(self, signum: int):
        self.signum, self.raised, self.previous = signum, False, None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        self.raised = True

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(self.signum, self.previous)


ROUND_PREFIX, REFERENCE_PREFIX = "round/", "reference/"  # checkpoint extras


def pack_round(datasets: dict) -> dict[str, torch.Tensor]:
    """A round's model-made datasets as flat tensors for a checkpoint (``round/<stage>/<field>``,
    condition tensors as ``round/<stage>/cond.<name>``)."""
    return {f"{ROUND_PREFIX}{stage}/{key}": value for stage, dataset in datasets.items()
            for key, value in {**dataset.fields, **flatten(dataset.cond or {}, "cond.")}.items()}


def unpack_round(extra: dict[str, torch.Tensor], datasets: dict) -> dict:
    """The round's datasets saved in a checkpoint, else ``datasets`` (round 0 rebuilds exactly)."""
    fields: dict = {}
    for key, value in extra.items():
        if key.startswith(ROUND_PREFIX):
            stage, name = key[len(ROUND_PREFIX):].split("/", 1)
            fields.setdefault(None if stage == "None" else stage, {})[name] = value
    if not fields:
        return datasets
    rebuilt = {}
    for stage, values in fields.items():
        cond = unflatten({k[len("cond."):]: v for k, v in values.items() if k.startswith("cond.")}) or None
        rebuilt[stage] = PreferenceDataset(**{k: v for k, v in values.items() if not k.startswith("cond.")},
                                           name=datasets[stage].name if stage in datasets else "data", cond=cond)
    return rebuilt


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics logged after the checkpoint a run resumes from (they will be logged again), and a
    last line cut short by a crash or a full disk. A round's pool measures (``pool/*``), logged as the
    round starts at ``step``, came after that step's checkpoint: the resumed run logs them again."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and (row.get("step", 0) < step or row.get("step", 0) == step
                                      and not any(key.startswith("pool/") for key in row)):
            kept.append(line)
    write_text(path, "".join(line + "\n" for line in kept))
