"""An in-memory preference dataset of tensors, validated once at construction."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from prefopt.errors import ConfigError


class PreferenceDataset(Dataset):
    """Rows of winners, optionally with losers and their rewards.

    winner, loser: (N, C, H, W) or (N, C, T, H, W); reward_w, reward_l: (N,) in [0, 1];
    mask_w, mask_l: hand masks (N, 1, H', W') or (N, 1, F, H', W') in [0, 1] (prefopt.modules.hand_aware).
    prompts: N texts (pixel data for a latent model family, encoded by prefopt.data.latents);
    cond: the denoiser's condition kwargs, a (nested) dict of (N, ...) tensors, items get ``cond``.
    """

    def __init__(self, winner: torch.Tensor, loser: torch.Tensor | None = None,
                 reward_w: torch.Tensor | None = None, reward_l: torch.Tensor | None = None, name: str = "data",
                 mask_w: torch.Tensor | None = None, mask_l: torch.Tensor | None = None,
                 prompts: list[str] | None = None, cond: dict | None = None):
        if len(winner) == 0:
            raise ConfigError(f"{name}: the dataset is empty")
        self.name = name
        self.info: dict = {}  # how the data was made (model-made pools: reward_calls; pool: good_rate, mean_reward)
        self.prompts = prompts
        self.cond = cond
        fields = {"winner": winner, "loser": loser, "reward_w": reward_w, "reward_l": reward_l,
                  "mask_w": mask_w, "mask_l": mask_l}
        self.fields = {k: v for k, v in fields.items() if v is not None}
        _check_rows(name, self.fields, prompts, cond)
        _check_rewards(name, reward_w, reward_l)
        _check_masks(name, winner, mask_w, mask_l, loser)
        if loser is not None and loser.shape != winner.shape:
            raise ConfigError(f"{name}: loser shape {tuple(loser.shape[1:])} != winner shape {tuple(winner.shape[1:])}")

    def set_masks(self, masks: dict[str, torch.Tensor]) -> None:
        """Replace the hand masks (``mask_w``, ``mask_l``) by ``masks``, e.g. fitted to the latent grid."""
        for key, mask in masks.items():
            if len(mask) != len(self):
                raise ConfigError(f"{self.name}: {key} has {len(mask)} rows, winner has {len(self)}")
            self.fields[key] = mask

    @property
    def paired(self) -> bool:
        return "loser" in self.fields

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.fields["winner"].shape[1:])

    def __len__(self) -> int:
        return len(self.fields["winner"])

    def __getitem__(self, index: int) -> dict:
        item = {key: value[index] for key, value in self.fields.items()}
        if self.cond is not None:
            item["cond"] = _index(self.cond, index)
        return item


def flatten(tree: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """A nested dict of tensors as ``{"a.b": tensor}`` (safetensors files hold flat dicts)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def unflatten(flat: dict[str, torch.Tensor]) -> dict:
    """The inverse of :func:`flatten`."""
    tree: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def _index(tree: dict, index: int) -> dict:
    return {k: _index(v, index) if isinstance(v, dict) else v[index] for k, v in tree.items()}


def _check_rows(name: str, fields: dict, prompts, cond) -> None:
    """Every field, prompt and condition has one finite row per winner."""
    rows = len(fields["winner"])
    if prompts is not None and len(prompts) != rows:
        raise ConfigError(f"{name}: {len(prompts)} prompts for {rows} rows")
    for key, value in flatten(cond or {}).items():
        if len(value) != rows:
            raise ConfigError(f"{name}: cond {key} has {len(value)} rows, winner has {rows}")
    for key, value in fields.items():
        if len(value) != rows:
            raise ConfigError(f"{name}: {key} has {len(value)} rows, winner has {rows}")
        bad = (~torch.isfinite(value.flatten(1) if value.dim() > 1 else value)).view(len(value), -1).any(dim=1)
        if bad.any():
            raise ConfigError(f"{name}: {key} is not finite at row {int(bad.nonzero()[0])}")


def _check_rewards(name: str, reward_w, reward_l) -> None:
    """Rewards come together, one per row, in [0, 1], the winner's strictly above the loser's."""
    if (reward_w is None) != (reward_l is None):
        raise ConfigError(f"{name}: reward_w and reward_l come together (got only one)")
    if reward_w is None:
        return
    for key, value in (("reward_w", reward_w), ("reward_l", reward_l)):
        if value.dim() != 1:
            raise ConfigError(f"{name}: {key} must have shape ({len(value)},), got {tuple(value.shape)}")
        outside = ((value < 0) | (value > 1)).nonzero()
        if len(outside):
            raise ConfigError(f"{name}: {key} at row {int(outside[0])} is {float(value[outside[0]]):.3f}, outside [0, 1]")
    bad = (reward_w <= reward_l).nonzero()
    if len(bad):
        raise ConfigError(f"{name}: row {int(bad[0])} has reward_w <= reward_l "
                          f"({float(reward_w[bad[0]]):.3f} <= {float(reward_l[bad[0]]):.3f})")


def _check_masks(name: str, winner, mask_w, mask_l, loser) -> None:
    """Hand masks are (N, 1, ...) like the samples, in [0, 1]; a loser's mask needs losers."""
    for key, mask in (("mask_w", mask_w), ("mask_l", mask_l)):
        if mask is None:
            continue
        if mask.dim() != winner.dim() or mask.shape[1] != 1:
            raise ConfigError(f"{name}: {key} must be (N, 1, ...) like the samples, got {tuple(mask.shape)}")
        outside = ((mask < 0) | (mask > 1)).flatten(1).any(dim=1).nonzero()
        if len(outside):
            raise ConfigError(f"{name}: {key} at row {int(outside[0])} is outside [0, 1]")
    if mask_l is not None and loser is None:
        raise ConfigError(f"{name}: mask_l without losers")
