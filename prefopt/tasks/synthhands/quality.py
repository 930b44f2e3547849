"""What the reward does not measure, for SynthHands images (and clips, frame by frame): distance to
held-out renders of good hands, diversity, and the feature network's judge.

    fd                  Fréchet distance of the samples' features (prefopt/tasks/synthhands/features.py)
                        to those of REFERENCE renders of good hands, bootstrap 95% interval
    diversity           mean pairwise feature distance of the samples (diversity_reference: the
                        renders', for scale: a model as diverse as the renders scores about the same)
    coverage            the share of the renders' pose and colour (the network's reading of the
                        orientation, skin and background colour) that the samples cover (k = 5)
    classifier_rate     the share the network reads as five separated fingers, Wilson 95% interval

The renders are drawn from the evaluation's seed + 1: they share no draw with a training pool
(data.seed, + 1, + 2) nor with the renders of the denoising-error check (the evaluation's seed).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from prefopt.evaluation.distribution import RESAMPLES, coverage, frechet_with_interval, pairwise_distance
from prefopt.evaluation.stats import proportion_ci
from prefopt.tasks.synthhands import features as hand_features
from prefopt.tasks.synthhands.render import render, sample_specs

REFERENCE = 2048  # renders of good hands the samples are compared with


def good_renders(n: int, seed: int, size: int = hand_features.SIZE) -> torch.Tensor:
    """``n`` renders of good hands (N, 3, size, size) drawn from ``seed``."""
    return render(sample_specs(n, size, generator=torch.Generator().manual_seed(seed)), size)[0]


@lru_cache(maxsize=4)
def reference(seed: int, n: int = REFERENCE) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (n, d), pose-and-colour attributes (n, 8)) of ``n`` good renders drawn from ``seed``."""
    return read(good_renders(n, seed))[:2]


@torch.no_grad()
def read(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features (N, d), attributes (N, 8), five separated (N,) bool) of images (N, 3, H, W) in [-1, 1]."""
    network = hand_features.load()
    prediction = network.predict(images)
    return network(images), hand_features.attributes(prediction), hand_features.five_separated(prediction)


def compare(features: torch.Tensor, attributes: torch.Tensor, reference_features: torch.Tensor,
            reference_attributes: torch.Tensor, seed: int, resamples: int = RESAMPLES) -> dict:
    """Fréchet distance (with its bootstrap interval), diversity and coverage of one set against the
    renders'; coverage against as many renders as there are samples (its k-NN balls depend on the count)."""
    fd, low, high = frechet_with_interval(reference_features, features, resamples, seed)
    n = min(len(attributes), len(reference_attributes))
    return {"fd": fd, "fd_ci95": [low, high], "diversity": pairwise_distance(features),
            "diversity_reference": pairwise_distance(reference_features[:len(features)]),
            "coverage": coverage(reference_attributes[:n], attributes)}


def quality(images: torch.Tensor, seed: int, resamples: int = RESAMPLES) -> dict:
    """The distribution, diversity and judge numbers of images (N, 3, H, W) against the renders of ``seed + 1``."""
    features, attributes, judged = read(images)
    reference_features, reference_attributes = reference(seed + 1)
    rate, low, high = proportion_ci(int(judged.sum()), len(judged))
    return {**compare(features, attributes, reference_features, reference_attributes, seed, resamples),
            "classifier_rate": rate, "classifier_rate_ci95": [low, high]}


def describe(result: dict) -> str:
    """The numbers of :func:`quality` (or their per-frame version for clips) in words."""
    low, high = result["fd_ci95"]
    return (f"feature classifier {100 * result['classifier_rate']:.1f}%, FD to renders {result['fd']:.2f} "
            f"[{low:.2f}, {high:.2f}], diversity {result['diversity']:.2f} (renders {result['diversity_reference']:.2f}), "
            f"coverage {100 * result['coverage']:.0f}%")
