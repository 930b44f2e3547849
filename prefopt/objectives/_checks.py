"""Argument checks shared by the objectives: one-line errors that name the culprit. Shapes only
(no values), so they cost no host-device sync."""

import math

import torch

from prefopt.errors import ConfigError


def check_beta(beta: float) -> None:
    if not (beta > 0 and math.isfinite(beta)):
        raise ConfigError(f"objective.beta must be > 0 and finite, got {beta}")


def check_paired(policy_err: torch.Tensor, ref_err: torch.Tensor, *per_pair: torch.Tensor) -> None:
    """Errors (2, B) with row 0 winners, identical shapes; ``per_pair`` tensors (B,)."""
    if policy_err.dim() != 2 or policy_err.shape[0] != 2:
        raise ValueError(f"paired errors must have shape (2, B) (row 0 winners), got {tuple(policy_err.shape)}")
    if ref_err.shape != policy_err.shape:
        raise ValueError(f"ref_err shape {tuple(ref_err.shape)} != policy_err shape {tuple(policy_err.shape)}")
    for value in per_pair:
        if value.shape != policy_err.shape[1:]:
            raise ValueError(f"per-pair inputs must have shape ({policy_err.shape[1]},), got {tuple(value.shape)}")


def check_unpaired(policy_err: torch.Tensor, *others: torch.Tensor) -> None:
    """Every input (B,) with the same B."""
    if policy_err.dim() != 1:
        raise ValueError(f"unpaired inputs must have shape (B,), got {tuple(policy_err.shape)}")
    for value in others:
        if value.shape != policy_err.shape:
            raise ValueError(f"unpaired inputs must have shape ({policy_err.shape[0]},), got {tuple(value.shape)}")
