"""The shipped base models load through the real ``from_pretrained`` path of their config group, they and
the SynthHands feature network are the weights their PROVENANCE.md names, and the video base reads its
reference image, the driving motion and the audio through its trained input channels and modules."""

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


def test_the_video_base_loads_and_follows_its_conditions():
    model = build_model(compose("config", "model=anim_base", "data=synth_anim").model)
    denoiser = model.denoiser.eval()
    assert type(denoiser).__name__ == "MotionVideoModel" and denoiser.config.image_to_video
    assert denoiser.modulation is not None and denoiser.audio_modulation is not None
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 16, 16, generator=gen)
    cond = {"motion": torch.randn(2, 3, 4, 16, 16, generator=gen), "audio": torch.rand(2, 1, 16, 16, 16) * 2 - 1,
            "reference": torch.randn(2, 3, 16, 16, generator=gen)}
    t = torch.tensor([500.0, 500.0])
    with torch.no_grad():
        full = denoiser(x, t, **cond).sample
        assert full.shape == x.shape
        # zero-initialized modules that learned nothing would leave the output unchanged
        for key, other in (("motion", -cond["motion"]), ("audio", -cond["audio"])):
            without = denoiser(x, t, **{k: v for k, v in cond.items() if k != key}).sample
            flipped = denoiser(x, t, **{**cond, key: other}).sample
            assert (full - without).abs().mean() > 1e-3 and (full - flipped).abs().mean() > 1e-3, key
        moved = denoiser(x, t, **{**cond, "reference": -cond["reference"]}).sample
        assert (full - moved).abs().mean() > 1e-3
