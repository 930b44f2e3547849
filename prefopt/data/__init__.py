"""Datasets the training loop reads: winners (and losers, rewards, masks) as tensors.

``build_dataset(cfg.data, paired=..., stage=...)`` calls the builder ``data.builder`` names. Its
items are dicts: ``winner`` (C, H, W) or (C, T, H, W); for paired data also ``loser``, ``reward_w``,
``reward_l`` (rewards normalized to [0, 1], winner strictly above loser); ``cond`` for a model
that reads a condition. Your files stream from disk (prefopt/data/files.py); the embedded
benchmarks build theirs in memory (prefopt/tasks).
"""

from prefopt.data.preference import PreferenceDataset


def build_dataset(cfg, paired: bool, stage: str | None = None, model=None, runtime=None):
    """``model``: the current ModelBundle, for data made of its samples (``builder.model_made``) or
    encoded by its family; ``runtime``: the run's processes, for builders that stream (``builder.streams``)."""
    from prefopt.config import data_builder

    builder = data_builder(cfg)
    if getattr(builder, "streams", False):
        return builder(cfg, paired=paired, stage=stage, model=model, runtime=runtime)
    return builder(cfg, paired=paired, stage=stage, model=model)


__all__ = ["PreferenceDataset", "build_dataset"]
