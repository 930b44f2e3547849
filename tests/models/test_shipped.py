"""The shipped base models load through the real ``from_pretrained`` path of their config group, they and
the SynthHands feature network are the weights their PROVENANCE.md names, and the video base reads the
driving motion through its trained modulation module."""

from __future__ import annotations

import hashlib
import re

import pytest
import torch
from commands import compose

from prefopt.config import ASSETS
from prefopt.models import build_model


@pytest.mark.parametrize(("asset", "weights"), [("synth_base", "diffusion_pytorch_model.safetensors"),
                                               ("anim_base", "diffusion_pytorch_model.safetensors"),
                                               ("hand_features", "model.safetensors")])
def test_shipped_weights_are_the_ones_their_provenance_names(asset, weights):
    folder = ASSETS / asset
    digest = hashlib.sha256((folder / weights).read_bytes()).hexdigest()
    named = re.findall(r"\b[0-9a-f]{64}\b", (folder / "PROVENANCE.md").read_text())
    assert named == [digest]


def test_the_video_base_loads_and_follows_its_motion_condition():
    model = build_model(compose("config", "model=anim_base", "data=synth_anim").model)
    denoiser = model.denoiser.eval()
    assert type(denoiser).__name__ == "MotionVideoModel" and denoiser.modulation is not None
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 16, 16, generator=gen)
    motion = torch.randn(2, 3, 4, 16, 16, generator=gen)
    t = torch.tensor([500.0, 500.0])
    with torch.no_grad():
        plain = denoiser(x, t).sample
        driven = denoiser(x, t, motion=motion).sample
        other = denoiser(x, t, motion=-motion).sample
    assert plain.shape == x.shape
    # a zero-initialized module that learned nothing would leave the output unchanged
    assert (driven - plain).abs().mean() > 1e-3 and (driven - other).abs().mean() > 1e-3
