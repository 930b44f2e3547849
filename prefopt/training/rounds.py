"""The data of each round: every stage's dataset, model-made data sampled from the model of that
round (the base for round 0, the policy after), hand masks, and for a latent model family the VAE
latents and text embeddings (cached on disk). Also the budget that makes runs comparable (reward
calls, pairs) and the checks that fail at start-up rather than mid-run."""

from __future__ import annotations

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
        cfg, paired = self.cfg, self.cfg.objective.paired
        data_cfg = replace(cfg.data, seed=cfg.data.seed + ROUND_SEED_STRIDE * r)
        with self.accelerator.main_process_first():  # the main process samples (and caches) model-made data first
            datasets = {s.stage: build_dataset(data_cfg, paired=paired, stage=s.stage, model=source)
                        for s in self.segments if s.round == r}
            if cfg.hand_aware.enabled:
                self._add_masks(datasets)
            if self.bundle.family is not None:
                datasets = {stage: self._encoded(dataset) for stage, dataset in datasets.items()}
        # the budget: a round's stages share one scored pool; pairs are counted once per round
        self.budget["reward_calls"] += max(d.info.get("reward_calls", 0) for d in datasets.values())
        self.budget["pairs"] += max(len(d) for d in datasets.values()) if paired else 0
        check_fields(cfg.objective, datasets)
        return datasets

    def _add_masks(self, datasets: dict) -> None:
        """Hand masks made on the pixels; a latent model's encoding fits them to its grid."""
        hand_aware = replace(self.cfg.hand_aware, dilate=0) if self.bundle.family else self.cfg.hand_aware
        for dataset in datasets.values():
            dataset.set_masks(hand_masks(dataset, hand_aware, cache_root() / "hand_masks"))

    def _encoded(self, dataset):
        """Pixels and prompts as VAE latents and text embeddings (model families), cached on disk."""
        from prefopt.data.latents import encode_dataset

        return encode_dataset(dataset, self.bundle.family, self.bundle.path, cache_root() / "latents",
                              self.accelerator.device, self.weight_dtype, dilate=self.cfg.hand_aware.dilate)


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
    expected = getattr(model.config, "in_channels", None)
    channels = dataset.sample_shape[0]
    if expected is not None and expected != channels:
        raise ConfigError(f"model.config.in_channels is {expected} but the data has {channels} channels")
