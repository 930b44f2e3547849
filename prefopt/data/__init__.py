"""Datasets the training loop reads: winners (and losers, rewards, masks) as tensors.

``build_dataset(cfg.data, paired=..., stage=...)`` calls the builder ``data.builder`` names and
returns a :class:`PreferenceDataset`. Its items are dicts: ``winner`` (C, H, W) or (C, T, H, W); for
paired data also ``loser``, ``reward_w``, ``reward_l`` (rewards normalized to [0, 1], winner
strictly above loser).
"""

from prefopt.data.preference import PreferenceDataset


def build_dataset(cfg, paired: bool, stage: str | None = None, model=None) -> PreferenceDataset:
    """``model``: the current ModelBundle, for datasets made of its samples (``builder.model_made``)."""
    from prefopt.config import data_builder

    return data_builder(cfg)(cfg, paired=paired, stage=stage, model=model)


__all__ = ["PreferenceDataset", "build_dataset"]
