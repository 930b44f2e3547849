"""The evaluation's interval arithmetic (against published values) and its outputs."""

from __future__ import annotations

import json

import pytest
import torch

from prefopt.evaluation.grid import save_grid
from prefopt.evaluation.stats import mean_ci, proportion_ci


def test_wilson_interval_matches_published_values():
    # Wilson 95% intervals: 50/100 -> [0.4038, 0.5962]; 0/10 -> [0, 0.2775]; 10/10 -> [0.7225, 1]
    assert proportion_ci(50, 100) == pytest.approx((0.5, 0.4038, 0.5962), abs=1e-4)
    assert proportion_ci(0, 10) == pytest.approx((0.0, 0.0, 0.2775), abs=1e-4)
    assert proportion_ci(10, 10) == pytest.approx((1.0, 0.7225, 1.0), abs=1e-4)


def test_mean_interval_by_hand():
    # mean 3, sample sd sqrt(2.5) = 1.5811, se 0.70711, half-width 1.95996 * 0.70711 = 1.38590
    assert mean_ci(torch.tensor([1.0, 2, 3, 4, 5])) == pytest.approx((3.0, 1.61410, 4.38590), abs=1e-4)


def test_grid_png_has_one_framed_tile_per_sample(tmp_path):
    from PIL import Image

    samples = torch.zeros(5, 3, 16, 16)
    save_grid(samples, torch.tensor([True, False, True, False, True]), tmp_path / "g.png", columns=4, scale=2)
    image = Image.open(tmp_path / "g.png")
    assert image.size == (4 * 34, 2 * 34)
    assert image.getpixel((0, 0)) == (26, 204, 26)  # green frame of a good sample
    assert image.getpixel((34, 0)) == (204, 26, 26)  # red frame of a bad one


def test_evaluate_model_writes_json_and_png(tmp_path, model_cache):
    from hydra import compose, initialize_config_dir
    from test_train import CONF

    from prefopt.cli import to_config
    from prefopt.models import build_model
    from prefopt.tasks.synthhands.evaluation import SynthHandsEvaluator

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = to_config(compose("config", overrides=["model=tiny_flow"]))
    bundle = build_model(cfg.model)
    result = SynthHandsEvaluator(num_samples=8, steps=2, grid=8).evaluate(bundle.denoiser, bundle.scheduler, "tiny",
                                                                          tmp_path)
    saved = json.loads((tmp_path / "tiny.json").read_text())
    assert saved == result and result["num_samples"] == 8
    assert 0 <= result["good_rate_ci95"][0] <= result["good_rate"] <= result["good_rate_ci95"][1] <= 1
    assert (tmp_path / "tiny.png").is_file()
    # beyond the reward: distance to renders, diversity, the feature network's judge, the error on renders
    assert result["fd"] > 0 and result["fd_ci95"][0] < result["fd_ci95"][1]
    assert result["diversity"] > 0 and 0 <= result["coverage"] <= 1 and result["diversity_reference"] > 0
    assert 0 <= result["classifier_rate"] <= 1 and result["render_error"] > 0
    assert "FD to renders" in SynthHandsEvaluator.describe(result)
