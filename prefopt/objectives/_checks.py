"""Argument checks shared by the objectives: one-line errors that name the culprit."""

import torch

from prefopt.errors import ConfigError


def check_beta(beta: float) -> None:
    if not beta > 0:
        raise ConfigError(f"objective.beta must be > 0, got {beta}")


def check_paired(*errors: torch.Tensor) -> None:
    for err in errors:
        if err.dim() != 2 or err.shape[0] != 2:
            raise ValueError(f"paired errors must have shape (2, B) (row 0 winners), got {tuple(err.shape)}")


def check_unpaired(*tensors: torch.Tensor) -> None:
    for value in tensors:
        if value.dim() != 1:
            raise ValueError(f"unpaired inputs must have shape (B,), got {tuple(value.shape)}")
