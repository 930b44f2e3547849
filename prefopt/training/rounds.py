"""The data of each round: every stage's dataset, model-made data sampled from the model of that
round (the base for round 0, the policy after) and its hand masks; files stream, encoded by the
model's family and cached by their builder. Also the budget that makes runs comparable (reward
calls, pairs) and the checks that fail at start-up rather than mid-run."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace

from prefopt.data import build_dataset
from prefopt.errors import ConfigError
from prefopt.modules.hand_aware.sources import hand_masks
from prefopt.objectives import objective_inputs
from prefopt.paths import cache_root

ROUND_SEED_STRIDE = 1000  # round r draws its pool with data.seed + 1000 r


class Rounds:
    def __init__(self, cfg, accelerator, bundle, segments, weight_dtype):
        self.cfg, self.accelerator, self.bundle, self.segments = cfg, accelerator, bundle, segments
        self.weight_dtype = weight_dtype
        self.budget = {"reward_calls": 0, "pairs": 0}

    def build(self, r: int, source) -> dict:
        """Round ``r``'s dataset per stage; model-made data is sampled from ``source`` (a ModelBundle)."""
        from prefopt.config import data_builder
        from prefopt.data.files import Runtime

        cfg, paired = self.cfg, self.cfg.objective.paired
        data_cfg = replace(cfg.data, seed=cfg.data.seed + ROUND_SEED_STRIDE * r)
        streams = getattr(data_builder(cfg.data), "streams", False)
        runtime = Runtime(self.accelerator, self.weight_dtype, cfg.hand_aware, cfg.trainer.num_workers)
        # streamed data is read by every process together; model-made data first by the main process (then cached)
        with nullcontext() if streams else self.accelerator.main_process_first():
            datasets = {s.stage: build_dataset(data_cfg, paired=paired, stage=s.stage, model=source, runtime=runtime)
                        for s in self.segments if s.round == r}
        if not streams:
            self._in_memory(datasets)
        # the budget: a round's stages share one scored pool; pairs are counted once per round
        self.budget["reward_calls"] += max(d.info.get("reward_calls", 0) for d in datasets.values())
        self.budget["pairs"] += max(len(d) for d in datasets.values()) if paired else 0
        check_fields(cfg.objective, datasets)
        return datasets

    def _in_memory(self, datasets: dict) -> None:
        """Hand masks for data built in memory (the benchmarks'); streamed data comes with its own."""
        if self.bundle.family is not None:
            raise ConfigError(f"model.family={self.bundle.family.name} trains on image or video files (data=files), "
                              f"not data={self.cfg.data.name}")
        if self.cfg.hand_aware.enabled:
            for dataset in datasets.values():
                dataset.set_masks(hand_masks(dataset, self.cfg.hand_aware, cache_root() / "hand_masks"))


def pool_metrics(datasets: dict) -> dict:
    """A model-made pool's measures (its good rate, mean reward): the policy's reward at a round's start."""
    return {f"pool/{k}": v for k, v in next(iter(datasets.values())).info.get("pool", {}).items()}


def check_fields(objective, datasets: dict) -> None:
    """Fail at start-up, not mid-run, when the data lacks what the objective reads."""
    name = type(objective).__name__.lower()
    for dataset in datasets.values():
        if objective.paired and not dataset.paired:
            raise ConfigError(f"objective={name} needs winner/loser pairs; {dataset.name} has winners only")
        for field in ("reward_w", "reward_l"):
            if field in objective_inputs(objective) and field not in dataset.fields:
                raise ConfigError(f"objective={name} reads {field}; {dataset.name} has no rewards")


def check_channels(model, dataset) -> None:
    from prefopt.models.calls import latent_channels

    expected = latent_channels(model.config)
    channels = dataset.sample_shape[0]
    if expected is not None and expected != channels:
        raise ConfigError(f"the model denoises {expected}-channel latents (model.config) but the data has {channels} "
                          "channels")
