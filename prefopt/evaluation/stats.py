"""Interval arithmetic shared by the evaluators and the report."""

from __future__ import annotations

import math

import torch

Z95 = 1.959963984540054


def proportion_ci(successes: int, n: int, z: float = Z95) -> tuple[float, float, float]:
    """(rate, low, high): the Wilson score interval of a binomial proportion."""
    if n <= 0:
        raise ValueError("proportion_ci needs n > 0")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, centre - half, centre + half


def mean_ci(values: torch.Tensor, z: float = Z95) -> tuple[float, float, float]:
    """(mean, low, high): mean +- z * sample standard deviation / sqrt(n)."""
    values = values.double()
    mean = float(values.mean())
    half = z * float(values.std(unbiased=True)) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, mean - half, mean + half
