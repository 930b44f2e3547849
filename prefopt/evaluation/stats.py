"""Interval arithmetic shared by the evaluators and the report."""

from __future__ import annotations

import math
import statistics

import torch

Z95 = 1.959963984540054
# Student t quantiles t_{0.975, df}, df = 1..30 (beyond: the normal's 1.96 + 2.4/df, within 0.002)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


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


def t975(df: int) -> float:
    return T975[df - 1] if df <= len(T975) else 1.96 + 2.4 / df


def seeds_ci(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): mean +- t_{0.975, n-1} * s / sqrt(n) over seeds."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half
