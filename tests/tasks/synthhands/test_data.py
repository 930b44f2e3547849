"""SynthHands datasets: every objective's data costs exactly ``num_samples`` reward calls, winners are
strict good hands and losers are not."""

from __future__ import annotations

import pytest
import torch

import prefopt.tasks.synthhands.data as synth
from prefopt.config import DataConfig
from prefopt.objectives import REGISTRY
from prefopt.sampling import cached_samples
from prefopt.tasks.synthhands.render import render, sample_specs

POOL = 60


class _Bundle:
    """A stand-in base model for the pool: the pool is injected, reconstruction is the identity."""

    denoiser = scheduler = None


@pytest.fixture
def pool(monkeypatch):
    """A pool of renders, a third of them good, and a counter of scored images."""
    fingers = torch.tensor([5, 3, 7] * (POOL // 3))
    spec = sample_specs(POOL, 16, fingers=fingers, generator=torch.Generator().manual_seed(0))
    images, _ = render(spec, 16)
    calls = []
    from prefopt.tasks.synthhands import reward as hands

    real_score = hands.score
    n_good = int(real_score(images).good.sum())
    assert n_good >= POOL // 3 - 1  # the good renders pass the strict test

    def counting_score(x):
        calls.append(len(x))
        return real_score(x)

    monkeypatch.setattr(synth, "cached_samples", lambda model, n, seed, steps: images[:n])
    monkeypatch.setattr(hands, "score", counting_score)
    import prefopt.sampling

    monkeypatch.setattr(prefopt.sampling, "reconstruct", lambda d, s, x, strength, seed, steps: x)
    return n_good, calls


def _stages(objective):
    from prefopt.objectives.hgdpo import STAGES

    return list(STAGES) if objective == "hgdpo" else [None]


@pytest.mark.parametrize("objective", sorted(REGISTRY))
def test_each_objective_costs_num_samples_reward_calls(pool, objective):
    n_good, calls = pool
    cfg = DataConfig(name="synth", num_samples=POOL)
    paired = REGISTRY[objective].paired
    for stage in _stages(objective):
        calls.clear()
        data = synth.build_synth(cfg, paired=paired, stage=stage, model=_Bundle())
        assert sum(calls) == POOL, (objective, stage, calls)
        if paired:
            assert len(data) == POOL - n_good  # every bad sample is a loser once
            assert torch.all(data.fields["reward_w"] == 1) and torch.all(data.fields["reward_l"] < 1)
        else:
            assert len(data) == n_good


def test_winners_are_good_and_losers_bad(pool):
    from prefopt.tasks.synthhands.reward import score

    cfg = DataConfig(name="synth", num_samples=POOL)
    paired = synth.build_synth(cfg, paired=True, model=_Bundle())
    assert score(paired.fields["winner"]).good.all()
    assert not score(paired.fields["loser"]).good.any()
    hard = synth.build_synth(cfg, paired=True, stage="hard", model=_Bundle())
    assert score(hard.fields["winner"]).good.float().mean() >= 0.95  # fresh renders of good hands


def test_pool_without_good_hands_is_a_one_line_error(monkeypatch):
    from prefopt.errors import ConfigError

    spec = sample_specs(10, 16, fingers=torch.full((10,), 3), generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(synth, "cached_samples", lambda model, n, seed, steps: render(spec, 16)[0])
    with pytest.raises(ConfigError, match="no good hand"):
        synth.build_synth(DataConfig(name="synth", num_samples=10), paired=False, model=_Bundle())


def test_pool_is_cached_per_model_and_seed(tmp_path, monkeypatch, model_cache):
    from hydra import compose, initialize_config_dir
    from test_train import CONF

    from prefopt.cli import to_config
    from prefopt.models import build_model

    monkeypatch.setenv("PREFOPT_CACHE", str(tmp_path))
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        bundle = build_model(to_config(compose("config", overrides=["model=tiny_flow"])).model)
    first = cached_samples(bundle, 6, seed=3, steps=2)
    assert len(list((tmp_path / "samples").iterdir())) == 1
    again = cached_samples(bundle, 6, seed=3, steps=2)
    other = cached_samples(bundle, 6, seed=4, steps=2)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert len(list((tmp_path / "samples").iterdir())) == 2
