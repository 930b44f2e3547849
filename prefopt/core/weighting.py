"""Per-sample (region-weighted) denoising error.

    e(x) = sum_p w_p (f(x_t, t, c) - target)_p^2 / sum_p w_p

With no weights (or weights of all ones) this is the plain per-sample MSE. Weights are normalized
per sample so that the error's scale, and therefore what beta means, does not depend on how much
of the image a region mask covers. Images are (B, C, H, W), videos (B, C, T, H, W); weights
broadcast against them (typically (B, 1, H, W) or (B, 1, T, H, W)).
"""

from __future__ import annotations

import torch


def per_sample_error(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) float32 weighted mean squared error per sample."""
    squared = (prediction.float() - target.float()).pow(2)
    dims = tuple(range(1, squared.dim()))
    if weights is None:
        return squared.mean(dim=dims)
    weights = weights.float().expand_as(squared)
    return (weights * squared).sum(dim=dims) / weights.sum(dim=dims)
