"""What a checkpoint saves beyond accelerate's state (model, optimizer, LR scheduler, EMA, RNG), and
restores on resume: the step, the skipped steps, HG-DPO's moved reference, a round's model-made data,
and the run's composed config, which a resumed run must match but for the keys that may change."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefopt.checkpoints import (
    REFERENCE_PREFIX,
    checkpoint_dirs,
    load_latest,
    pack_round,
    save_checkpoint,
    saved_settings,
    truncate_metrics,
    unpack_round,
)
from prefopt.errors import ConfigError

log = logging.getLogger("prefopt")

# what may differ between a run and its resume: where and how often it logs, evaluates and saves, how
# far it goes (trainer.max_steps extends a run), how it runs (compiled or not, loader workers, memory)
MAY_CHANGE_ON_RESUME = ("logger.", "eval.", "trainer.max_steps", "trainer.checkpoint_every", "trainer.keep_checkpoints",
                        "trainer.log_every", "trainer.resume", "trainer.overwrite", "trainer.num_workers",
                        "trainer.max_nonfinite_steps", "trainer.compile", "model.cache_dir",
                        "model.gradient_checkpointing", "export")


def run_settings(cfg) -> dict:
    """The composed config (a Config) as flat ``key: value`` pairs of JSON values; the objective's
    class as ``objective.name``."""
    tree = asdict(cfg)
    tree["objective"] = {"name": type(cfg.objective).__name__.lower(), **tree["objective"]}
    return json.loads(json.dumps(_flatten(tree), default=str))


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_settings(saved: dict, current: dict) -> list[str]:
    """``key old -> new`` for every key whose value differs and may not change on resume."""
    absent = "(absent)"
    return [f"{key} {saved.get(key, absent)!r} -> {current.get(key, absent)!r}"
            for key in sorted(set(saved) | set(current))
            if saved.get(key, absent) != current.get(key, absent)
            and not any(key == allowed or (allowed.endswith(".") and key.startswith(allowed))
                        for allowed in MAY_CHANGE_ON_RESUME)]


def check_resume(settings: dict, run_dir: Path, resume: str) -> None:
    """``trainer.resume=auto`` continues the run in ``run_dir`` only with its settings (but for
    :data:`MAY_CHANGE_ON_RESUME`): otherwise one line listing what differs. A checkpoint named
    explicitly is the user's choice: the differences are logged."""
    if resume == "none":
        return
    saved = saved_settings(checkpoint_dirs(run_dir)[::-1] if resume == "auto" else [Path(resume)])
    if saved is None:
        return
    changed = changed_settings(saved, settings)
    if not changed:
        return
    if resume != "auto":
        log.warning("resuming %s with other settings: %s", resume, "; ".join(changed))
        return
    allowed = ", ".join(key + "*" if key.endswith(".") else key for key in MAY_CHANGE_ON_RESUME)
    raise ConfigError(f"trainer.resume=auto: {run_dir} holds a run with other settings ({'; '.join(changed)}); "
                      f"resume it with its own settings (only {allowed} may change), or "
                      "start a new run: another hydra.run.dir, or trainer.resume=none trainer.overwrite=true")


@dataclass
class TrainState:
    step: int = 0
    skipped: int = 0
    skipped_in_a_row: int = 0
    reference_moved: bool = False
    last_checkpoint: Path | None = None
    settings: dict = field(default_factory=dict)  # the run's composed config, saved in every checkpoint

    def save(self, accelerator, run_dir: Path, keep: int, datasets: dict, round_index: int, reference) -> Path:
        """A checkpoint at this step; round 0's data is rebuilt on resume, later rounds' is saved."""
        extra = pack_round(datasets) if round_index > 0 else {}
        if self.reference_moved:
            extra.update({f"{REFERENCE_PREFIX}{k}": v for k, v in reference.frozen.state_dict().items()})
        saved = {"step": self.step, "skipped": self.skipped, "config": self.settings}
        self.last_checkpoint = save_checkpoint(accelerator, run_dir, self.step, saved, extra, keep)
        return self.last_checkpoint

    @classmethod
    def resume(cls, accelerator, run_dir: Path, resume: str, datasets: dict, reference,
               settings: dict) -> tuple[TrainState, dict]:
        """The state of the newest checkpoint that loads (accelerate's part loaded into the prepared
        objects) and the datasets it was training on; a fresh state when there is none. ``settings``:
        the run's (checked against the checkpoint's by :func:`check_resume` at start-up)."""
        restored = load_latest(accelerator, run_dir, resume) if resume != "none" else None
        if restored is None:
            return cls(settings=settings), datasets
        saved, extra, path = restored
        state = cls(step=saved["step"], skipped=saved["skipped"], last_checkpoint=path, settings=settings)
        moved = {k[len(REFERENCE_PREFIX):]: v for k, v in extra.items() if k.startswith(REFERENCE_PREFIX)}
        if moved:  # HG-DPO's previous-stage reference, as it was at the checkpoint
            reference.frozen.load_state_dict(moved)
            state.reference_moved = True
        if accelerator.is_main_process:
            truncate_metrics(run_dir / "metrics.jsonl", state.step)
        return state, unpack_round(extra, datasets)

    def count(self, skipped: bool) -> None:
        """One optimizer step more, skipped or not."""
        self.step += 1
        self.skipped += int(skipped)
        self.skipped_in_a_row = self.skipped_in_a_row + 1 if skipped else 0
