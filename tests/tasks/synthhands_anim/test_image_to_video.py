"""The image-to-video conditioning of SynthHands Animation's model (prefopt/models/video.py): the
reference image enters as extra input channels of every frame from the first sampling step on, and
the audio condition, 4 samples per frame, reaches its own frame only through the rate-4 fold of
temporal motion modulation."""

from __future__ import annotations

import torch
from commands import compose

from prefopt.models import build_model
from prefopt.tasks.synthhands_anim.animate import Conditions

MODEL = ["model=tiny_video", "modulation.enabled=true", "modulation.audio=true", "data=synth_anim"]


def _model():
    return build_model(compose("config", *MODEL).model)


def test_the_reference_is_given_exactly_on_every_frame_from_sampling_step_0(model_cache):
    from prefopt.sampling import generate

    model = _model()
    cond = Conditions.draw(3, 4, 16, torch.Generator().manual_seed(0)).cond(16)
    seen = []  # the backbone's input: frames folded into the batch, clip-major
    hook = model.denoiser.video.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].unflatten(0, (3, 4)).transpose(1, 2).clone()))
    try:
        generate(model.denoiser, model.scheduler, 3, seed=7, steps=3, sample_shape=(3, 4, 16, 16), cond=cond)
    finally:
        hook.remove()
    assert len(seen) == 3  # one backbone call per sampling step
    first = seen[0]
    assert first.shape == (3, 6, 4, 16, 16)  # the noisy clip, then its reference, on channels
    assert torch.equal(first[:, :3], torch.randn((3, 3, 4, 16, 16), generator=torch.Generator().manual_seed(7)))
    for frame in range(4):  # exactly the reference image, beside every frame
        assert torch.equal(first[:, 3:, frame], cond["reference"])
    for later in seen[1:]:
        assert torch.equal(later[:, 3:], first[:, 3:])


def test_the_rate_4_fold_feeds_each_frames_audio_to_that_frame_only(model_cache):
    model = _model().denoiser.eval()
    audio_module = model.audio_modulation
    assert audio_module.rate == 4 and audio_module.compression == 1
    torch.nn.init.normal_(audio_module.project.weight, std=0.1)  # zero-initialized: give it weights to see the path
    entering = []  # registered after the modules' hooks: conv_in's output with the conditions added
    hook = model.video.conv_in.register_forward_hook(lambda module, args, output: entering.append(output.clone()))
    cond = Conditions.draw(1, 4, 16, torch.Generator().manual_seed(1)).cond(16)
    sample, t = torch.randn(1, 3, 4, 16, 16, generator=torch.Generator().manual_seed(2)), torch.tensor([500.0])
    try:
        with torch.no_grad():
            model(sample, t, **cond)
            for sample_index in range(16):  # change one audio sample at a time
                changed = {**cond, "audio": cond["audio"].clone()}
                changed["audio"][:, :, sample_index] = 0.5 - cond["audio"][:, :, sample_index]
                model(sample, t, **changed)
    finally:
        hook.remove()
    for sample_index, after in enumerate(entering[1:]):
        moved = (after - entering[0]).abs().amax(dim=(1, 2, 3)) > 0  # (4,): one row per frame of the one clip
        expected = torch.zeros(4, dtype=torch.bool)
        expected[sample_index // 4] = True  # samples 4j .. 4j + 3 belong to video frame j
        assert torch.equal(moved, expected), (sample_index, moved)
