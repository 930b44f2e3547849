"""Datasets the training loop reads: winners (and losers, rewards, masks) as tensors.

``build_dataset(cfg.data, paired=..., stage=...)`` returns a :class:`PreferenceDataset`. Its items
are dicts: ``winner`` (C, H, W) or (C, T, H, W); for paired data also ``loser``, ``reward_w``,
``reward_l`` (rewards normalized to [0, 1], winner strictly above loser).
"""

from prefopt.data.files import build_files
from prefopt.data.preference import PreferenceDataset
from prefopt.data.synth import build_mix, build_renders, build_synth
from prefopt.data.synth_anim import build_anim_mix, build_synth_anim
from prefopt.errors import ConfigError

BUILDERS = {"synth": build_synth, "renders": build_renders, "mix": build_mix, "files": build_files,
            "synth_anim": build_synth_anim, "anim_mix": build_anim_mix}


def build_dataset(cfg, paired: bool, stage: str | None = None, model=None) -> PreferenceDataset:
    """``model``: the base ModelBundle, for datasets made of its samples (``synth``)."""
    if cfg.name not in BUILDERS:
        raise ConfigError(f"data.name: unknown dataset {cfg.name!r} (known: {sorted(BUILDERS)})")
    return BUILDERS[cfg.name](cfg, paired=paired, stage=stage, model=model)


__all__ = ["BUILDERS", "PreferenceDataset", "build_dataset"]
