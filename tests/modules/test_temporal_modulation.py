"""Temporal motion modulation: the fold onto the latent temporal grid is exact and matches its
definition written out frame by frame; the zero-initialized injection leaves a UNet3D and a Wan
transformer unchanged at step 0 yet trains; frame counts no VAE takes are one-line errors."""

from __future__ import annotations

import pytest
import torch

from prefopt.errors import ConfigError
from prefopt.modules.temporal_modulation import TemporalMotionModulation, fold, latent_frames, unfold


@pytest.mark.parametrize("rate", [1, 4])
@pytest.mark.parametrize("compression", [1, 4])
@pytest.mark.parametrize("frames", [4, 8, 13, 16, 17])
def test_fold_is_exactly_invertible_and_groups_consecutive_frames(frames, compression, rate):
    cond = torch.randn(2, 3, rate * frames, 5, 6, generator=torch.Generator().manual_seed(frames))
    causal = compression > 1 and frames % compression == 1
    latent = (frames - 1) // compression + 1 if causal else frames // compression
    assert latent_frames(frames, compression) == (latent, causal)
    folded = fold(cond, compression, rate)
    group = compression * rate
    assert folded.shape == (2, 3 * group, latent, 5, 6)
    padded = torch.cat([cond[:, :, :1]] * ((compression - 1) * rate) + [cond], dim=2) if causal else cond
    for frame in range(latent):  # latent frame l, slot j holds condition frame l * group + j, channels j*C..(j+1)*C
        for slot in range(group):
            assert torch.equal(folded[:, 3 * slot:3 * slot + 3, frame], padded[:, :, frame * group + slot])
    assert torch.equal(unfold(folded, frames, compression, rate), cond)


@pytest.mark.parametrize(("frames", "compression"), [(6, 4), (7, 4), (10, 4), (5, 3)])
def test_frame_counts_no_vae_takes_are_one_line_errors(frames, compression):
    message = (f"temporal modulation: {frames} frames do not fit a VAE with {compression}x temporal compression "
               rf"\(it takes {compression}k \+ 1 frames, causal, or {compression}k\)")
    with pytest.raises(ConfigError, match=message):
        fold(torch.zeros(1, 2, frames, 4, 4), compression)
    with pytest.raises(ConfigError, match="9 condition frames are not 4 per video frame"):
        fold(torch.zeros(1, 2, 9, 4, 4), 1, rate=4)


def _unet3d():
    from diffusers import UNet3DConditionModel

    return UNet3DConditionModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32),
                                down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), layers_per_block=1,
                                cross_attention_dim=8, attention_head_dim=4, norm_num_groups=8)


def _wan():
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=16,
                                 out_channels=16, text_dim=8, freq_dim=32, ffn_dim=32, num_layers=2,
                                 cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)


CASES = {  # denoiser, its input (a video's latents), the motion condition per video frame, module kwargs
    "unet3d": (_unet3d, (2, 3, 4, 8, 8), (2, 2, 4, 8, 8), {"compression": 1, "patch": 1}),
    "wan": (_wan, (2, 16, 2, 4, 4), (2, 16, 5, 8, 8), {"compression": 4, "patch": 4, "heads": 2}),
    "wan_audio": (_wan, (2, 16, 3, 4, 4), (2, 16, 4 * 9, 8, 8), {"compression": 4, "rate": 4, "patch": 4}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_zero_init_leaves_the_base_unchanged_at_step_zero_and_still_trains(case):
    make, sample_shape, cond_shape, kwargs = CASES[case]
    torch.manual_seed(0)
    denoiser = make().eval()
    g = torch.Generator().manual_seed(1)
    sample, cond = torch.randn(sample_shape, generator=g), torch.randn(cond_shape, generator=g)
    text = torch.randn(2, 3, 8, generator=g)
    timestep = torch.tensor([10, 500])

    def run():
        return denoiser(sample, timestep, encoder_hidden_states=text, return_dict=False)[0]

    with torch.no_grad():
        base = run()
    modulation = TemporalMotionModulation(denoiser, cond_channels=cond_shape[1], **kwargs)
    with modulation.condition(cond):
        wrapped = run()
    assert torch.equal(wrapped, base)

    optimizer = torch.optim.SGD(modulation.parameters(), lr=1e-2)
    with modulation.condition(cond):
        run().square().mean().backward()
    zero_init = modulation.attention[0].out.weight if hasattr(modulation, "attention") else modulation.project.weight
    assert zero_init.grad.abs().sum() > 0
    optimizer.step()
    with torch.no_grad(), modulation.condition(cond):
        assert not torch.allclose(run(), base)
    with torch.no_grad():
        assert torch.equal(run(), base)  # no condition: the hooks pass the base model through
    modulation.remove()


def test_a_condition_off_the_token_grid_is_one_line():
    denoiser = _wan()
    modulation = TemporalMotionModulation(denoiser, cond_channels=16, compression=4, patch=2)
    with pytest.raises(ConfigError, match=r"modulation: the condition gives 2 x 16 tokens, the denoiser has 8 "):
        with modulation.condition(torch.randn(1, 16, 5, 8, 8)):
            denoiser(torch.randn(1, 16, 2, 4, 4), torch.tensor([3]), encoder_hidden_states=torch.randn(1, 3, 8))
