"""The shipped feature network (prefopt/tasks/synthhands/features.py): it reads what the renderer drew,
its classifier is a judge of five separated fingers, and its command writes weights that load."""

from __future__ import annotations

import hashlib

import pytest
import torch

from prefopt.tasks.synthhands import features


def test_the_shipped_network_reads_every_kind_of_render():
    accuracy = features.accuracy(features.load(), n=300, seed=7)
    for kind in ("k=3", "k=4", "k=5", "k=6", "k=7", "fused"):
        assert accuracy[kind] >= 0.98, (kind, accuracy)
        assert accuracy[f"{kind} angle error"] < 10, (kind, accuracy)


def test_its_classifier_passes_good_hands_and_fails_bad_ones():
    from prefopt.tasks.synthhands.render import render, sample_specs

    generator = torch.Generator().manual_seed(3)
    good = render(sample_specs(200, 16, generator=generator), 16)[0]
    bad = render(sample_specs(200, 16, fingers=torch.tensor([3, 4, 6, 7]).repeat(50), generator=generator), 16)[0]
    fused = render(sample_specs(200, 16, fused=torch.ones(200, dtype=torch.bool), generator=generator), 16)[0]
    network = features.load()
    assert features.five_separated(network.predict(good)).float().mean() >= 0.98
    for images in (bad, fused):
        assert features.five_separated(network.predict(images)).float().mean() <= 0.02
    standardized = network(good)
    assert standardized.shape == (200, features.FEATURES)
    assert standardized.mean().abs() < 0.2 and standardized.std() == pytest.approx(1.0, abs=0.2)  # renders' own scale


def test_the_command_writes_weights_that_load_and_prints_their_digest(tmp_path, capsys):
    out = tmp_path / "features.safetensors"
    features.main(["--steps", "3", "--out", str(out)])
    printed = capsys.readouterr().out
    assert hashlib.sha256(out.read_bytes()).hexdigest() in printed and "accuracy on clean renders" in printed
    network = features.load(out)
    assert network(torch.zeros(2, 3, 16, 16)).shape == (2, features.FEATURES)
    assert network(torch.zeros(2, 3, 32, 32)).shape == (2, features.FEATURES)  # resized to 16 x 16 first
