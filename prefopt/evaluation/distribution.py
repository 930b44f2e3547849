"""Distribution distance and diversity in a learned feature space (SPEC s.6), for any task that
brings a feature network: features are (N, d) tensors, one row per sample.

    frechet_distance   ||mu_r - mu_s||^2 + tr(S_r + S_s - 2 (S_r S_s)^{1/2}) between the Gaussians
                       fitted to reference and sample features (the FID formula in another network's space)
    bootstrap          bias-corrected percentile 95% interval of any two-set statistic, both sets
                       resampled with replacement
    pairwise_distance  mean Euclidean distance over the pairs of distinct samples
    coverage           Naeem et al. 2020 ("Reliable Fidelity and Diversity Metrics for Generative
                       Models"): the share of reference points whose ball to their k-th nearest reference
                       neighbour holds at least one sample; a collapsed set covers few

The Fréchet distance is computed by torchmetrics' FID machinery,
``torchmetrics.image.fid.FrechetInceptionDistance`` with a custom feature module. As its source
(torchmetrics 1.9, ``src/torchmetrics/image/fid.py``) reads: given an ``nn.Module`` as ``feature`` it
takes the module's ``num_features`` (else runs a dummy image through it, a float one when
``normalize=True``); ``update(imgs, real)`` hands ``imgs`` to the module unchanged (the uint8
conversion applies to its own Inception only), casts the (N, d) output to float64 and accumulates
its sum and its outer-product sum; ``compute`` forms the means and the unbiased covariances and
calls ``_compute_fid``, which takes the trace of the square root from the eigenvalues of S_r S_s.
Here a task's network runs once per set and the metric gets its features through
:class:`Precomputed`, a pass-through module, so that the bootstrap's resamples need no forward pass;
``tests/evaluation/test_distribution.py`` checks that this equals the metric run on the images
with the network as its ``feature``, and the formula computed with scipy's ``sqrtm``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

RESAMPLES = 200


class Precomputed(nn.Module):
    """The feature module of a FrechetInceptionDistance fed features (N, d) instead of images."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _metric(num_features: int):
    from torchmetrics.image.fid import FrechetInceptionDistance

    return FrechetInceptionDistance(feature=Precomputed(num_features), normalize=True)


def frechet_distance(reference: torch.Tensor, samples: torch.Tensor, metric=None) -> float:
    """The Fréchet distance between reference features (N, d) and sample features (M, d), in float64."""
    metric = metric or _metric(reference.shape[1])
    metric.reset()
    metric.update(reference.double(), real=True)
    metric.update(samples.double(), real=False)
    return float(metric.compute())


def bootstrap(statistic: Callable[[torch.Tensor, torch.Tensor], float], reference: torch.Tensor,
              samples: torch.Tensor, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """(low, high): the 2.5th and 97.5th percentiles of ``statistic`` over ``resamples`` draws of
    both sets with replacement (each set keeps its size), shifted by the bootstrap's estimate of the
    statistic's bias (the resamples' mean minus the statistic). A resample repeats about a third of
    its samples, which shrinks the spread its covariance sees and raises a Fréchet distance: two
    render sets at 0.22 resampled to 0.45 on average and an unshifted interval [0.23, 0.75] missed
    the estimate; for an unbiased statistic the shift is about zero."""
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(resamples):
        pick_reference = torch.randint(0, len(reference), (len(reference),), generator=generator)
        pick_samples = torch.randint(0, len(samples), (len(samples),), generator=generator)
        values.append(statistic(reference[pick_reference], samples[pick_samples]))
    values = torch.tensor(values, dtype=torch.float64)
    bias = float(values.mean()) - statistic(reference, samples)
    low, high = torch.quantile(values, torch.tensor([0.025, 0.975], dtype=torch.float64))
    return float(low) - bias, float(high) - bias


def frechet_with_interval(reference: torch.Tensor, samples: torch.Tensor, resamples: int = RESAMPLES,
                          seed: int = 0) -> tuple[float, float, float]:
    """(Fréchet distance, bootstrap 95% interval low, high)."""
    metric = _metric(reference.shape[1])

    def statistic(ref, smp):
        return frechet_distance(ref, smp, metric)

    return (statistic(reference, samples), *bootstrap(statistic, reference, samples, resamples, seed))


def pairwise_distance(features: torch.Tensor) -> float:
    """Mean Euclidean distance between the features (N, d) of distinct samples (i != j)."""
    n = len(features)
    if n < 2:
        return 0.0
    distances = torch.cdist(features.double(), features.double())
    return float(distances.sum() / (n * (n - 1)))


def coverage(reference: torch.Tensor, samples: torch.Tensor, k: int = 5) -> float:
    """Share of reference points (N, d) with a sample (M, d) within the distance to their k-th
    nearest other reference point (Naeem et al. 2020, coverage)."""
    if len(reference) < 2:
        return float("nan")
    reference, samples, k = reference.double(), samples.double(), min(k, len(reference) - 1)  # a small eval set
    radius = torch.cdist(reference, reference).kthvalue(k + 1, dim=1).values  # the first is the point itself
    nearest = torch.cdist(reference, samples).min(dim=1).values
    return float((nearest <= radius).double().mean())
