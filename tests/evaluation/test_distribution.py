"""The distribution and diversity metrics (prefopt/evaluation/distribution.py) in the shipped feature
network's space: the Fréchet distance equals torchmetrics' FID with the network as its feature and the
formula computed with scipy; two render sets score near zero, far below the base model, and the
distance rises with every step of a degradation; copies of a few samples score lower diversity."""

from __future__ import annotations

import copy

import pytest
import torch

from prefopt.evaluation.distribution import (
    bootstrap,
    coverage,
    frechet_distance,
    frechet_with_interval,
    pairwise_distance,
)
from prefopt.tasks.synthhands import features as hand_features
from prefopt.tasks.synthhands.quality import compare, good_renders, read, reference

SEED = 10_000  # the evaluation's seed: its renders are drawn from SEED + 1


def _fd(images: torch.Tensor) -> float:
    return frechet_distance(reference(SEED + 1)[0], read(images)[0])


def test_fd_is_torchmetrics_fid_with_the_feature_network_and_the_formula():
    import scipy.linalg
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = good_renders(300, 1), good_renders(200, 2) * 0.8
    metric = FrechetInceptionDistance(feature=copy.deepcopy(hand_features.load()), normalize=True)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    ours = frechet_distance(read(real)[0], read(fake)[0])
    assert ours == pytest.approx(float(metric.compute()), rel=1e-5)
    a, b = read(real)[0].double().numpy(), read(fake)[0].double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.from_numpy(a).T.cov().numpy(), torch.from_numpy(b).T.cov().numpy()
    formula = ((mu_a - mu_b) ** 2).sum() + (cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real).trace()
    assert ours == pytest.approx(formula, rel=1e-6)


def test_two_render_sets_are_near_zero_and_far_below_the_base_model():
    from commands import compose

    from prefopt.models import build_model
    from prefopt.sampling import generate

    renders = _fd(good_renders(512, 5))
    base = build_model(compose("config", "model=base").model)
    samples = generate(base.denoiser, base.scheduler, 256, seed=SEED, steps=10)
    assert renders < 0.5
    assert _fd(samples) > 50 * renders


def _noise(images, level, generator):
    return (images + level * torch.randn(images.shape, generator=generator)).clamp(-1, 1)


def _stray(images, level, generator):
    """``level`` stray skin-bright pixels per image at random places."""
    n = len(images)
    places = torch.randint(0, images.shape[-1] * images.shape[-2], (n, level), generator=generator)
    flat = images.clone().flatten(2)
    flat.scatter_(2, places[:, None, :].expand(n, 3, level), 0.9)
    return flat.view_as(images)


def _colour(images, level, generator):
    return (images + torch.tensor([level, 0.0, -level]).view(1, 3, 1, 1)).clamp(-1, 1)


@pytest.mark.parametrize(("degrade", "levels"), [(_noise, (0.1, 0.2, 0.4)), (_stray, (1, 2, 4, 8)),
                                                 (_colour, (0.1, 0.2, 0.4))])
def test_fd_rises_monotonically_as_a_render_set_degrades(degrade, levels):
    test = good_renders(512, 5)
    generator = torch.Generator().manual_seed(0)
    distances = [_fd(test)] + [_fd(degrade(test, level, generator)) for level in levels]
    assert distances == sorted(distances) and len(set(distances)) == len(distances), distances
    assert distances[-1] > 10 * distances[0]


def test_diversity_falls_for_copies_of_a_few_samples():
    renders = good_renders(512, 5)
    reference_features, reference_attributes = reference(SEED + 1)
    diverse = compare(*read(renders)[:2], reference_features, reference_attributes, seed=0, resamples=10)
    collapsed = compare(*read(renders[:4].repeat(128, 1, 1, 1))[:2], reference_features, reference_attributes, seed=0,
                        resamples=10)
    assert collapsed["diversity"] < 0.85 * diverse["diversity"]
    assert diverse["coverage"] > 0.9 and collapsed["coverage"] < 0.1
    assert diverse["diversity"] == pytest.approx(diverse["diversity_reference"], rel=0.05)  # as diverse as the renders


def test_pairwise_distance_and_coverage_by_hand():
    points = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    assert pairwise_distance(points) == pytest.approx((3 + 4 + 5) / 3)
    line = torch.arange(6.0).view(-1, 1)  # reference 0..5; radius (2nd nearest other point): 2 at the ends, 1 inside
    assert coverage(line, torch.tensor([[0.5]]), k=2) == pytest.approx(2 / 6)  # 0 and 1 reach 0.5; 2 is 1.5 away
    assert coverage(line, torch.tensor([[0.5], [4.5]]), k=2) == pytest.approx(4 / 6)  # not 2 and 3
    assert coverage(line, torch.tensor([[0.5], [2.5], [4.5]]), k=2) == pytest.approx(1.0)


def test_bootstrap_interval_of_a_mean_difference_is_the_normal_one():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 1, generator=generator), torch.randn(300, 1, generator=generator) + 0.5

    def difference(x, y):
        return float(y.mean() - x.mean())

    low, high = bootstrap(difference, a, b, resamples=400, seed=1)
    half = 1.96 * float((a.var() / 400 + b.var() / 300).sqrt())
    assert low == pytest.approx(difference(a, b) - half, abs=0.03) and high == pytest.approx(difference(a, b) + half, abs=0.03)


def test_fd_interval_holds_its_estimate():
    fd, low, high = frechet_with_interval(reference(SEED + 1)[0], read(good_renders(512, 5))[0], resamples=50)
    assert low < fd < high
