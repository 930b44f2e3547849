"""Reference math for tests, written with ``math`` (independent of the torch code under test)."""

import math

import torch


def log_sigmoid(x: float) -> float:
    return math.log(1.0 / (1.0 + math.exp(-x)))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def t64(values, requires_grad=False):
    return torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad)
