"""What a checkpoint saves beyond accelerate's state (model, optimizer, LR scheduler, EMA, RNG), and
restores on resume: the step, the skipped steps, HG-DPO's moved reference, a round's model-made data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefopt.checkpoints import (
    REFERENCE_PREFIX,
    load_latest,
    pack_round,
    save_checkpoint,
    truncate_metrics,
    unpack_round,
)


@dataclass
class TrainState:
    step: int = 0
    skipped: int = 0
    skipped_in_a_row: int = 0
    reference_moved: bool = False
    last_checkpoint: Path | None = None

    def save(self, accelerator, run_dir: Path, keep: int, datasets: dict, round_index: int, reference) -> Path:
        """A checkpoint at this step; round 0's data is rebuilt on resume, later rounds' is saved."""
        extra = pack_round(datasets) if round_index > 0 else {}
        if self.reference_moved:
            extra.update({f"{REFERENCE_PREFIX}{k}": v for k, v in reference.frozen.state_dict().items()})
        self.last_checkpoint = save_checkpoint(accelerator, run_dir, self.step,
                                               {"step": self.step, "skipped": self.skipped}, extra, keep)
        return self.last_checkpoint

    @classmethod
    def resume(cls, accelerator, run_dir: Path, resume: str, datasets: dict, reference) -> tuple[TrainState, dict]:
        """The state of the newest checkpoint that loads (accelerate's part loaded into the prepared
        objects) and the datasets it was training on; a fresh state when there is none."""
        restored = load_latest(accelerator, run_dir, resume) if resume != "none" else None
        if restored is None:
            return cls(), datasets
        saved, extra, path = restored
        state = cls(step=saved["step"], skipped=saved["skipped"], last_checkpoint=path)
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
