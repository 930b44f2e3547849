"""Targets and noising against the diffusers schedulers' own formulas, for image and video shapes."""

import pytest
import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

from prefopt.core import NoiseProcess

SHAPES = [(3, 4, 8, 8), (3, 4, 5, 8, 8)]  # image (B, C, H, W), video (B, C, T, H, W)


def _expand(values, like):
    return values.view(-1, *([1] * (like.dim() - 1)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_ddpm_targets_match_closed_form(shape, prediction_type):
    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction_type)
    process = NoiseProcess(scheduler)
    x0 = torch.randn(shape)
    noised = process.noise(x0, generator=torch.Generator().manual_seed(0))
    abar = scheduler.alphas_cumprod[noised.timesteps]
    alpha, sigma = _expand(abar.sqrt(), x0), _expand((1 - abar).sqrt(), x0)
    eps = noised.noise
    torch.testing.assert_close(noised.x_t, alpha * x0 + sigma * eps)
    expected = {"epsilon": eps, "v_prediction": alpha * eps - sigma * x0, "sample": x0}[prediction_type]
    torch.testing.assert_close(noised.target, expected)
    torch.testing.assert_close(noised.t, noised.timesteps.float() / 1000)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sampling", ["uniform", "logit_normal"])
def test_flow_targets_match_rectified_flow(shape, sampling):
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    process = NoiseProcess(scheduler, timestep_sampling=sampling)
    x0 = torch.randn(shape)
    noised = process.noise(x0, generator=torch.Generator().manual_seed(1))
    sigma = noised.timesteps / 1000  # the scheduler's timesteps are sigma * num_train_timesteps
    torch.testing.assert_close(noised.t, sigma.float())
    s = _expand(noised.t, x0)
    torch.testing.assert_close(noised.x_t, (1 - s) * x0 + s * noised.noise)
    torch.testing.assert_close(noised.target, noised.noise - x0)
    assert ((noised.t > 0) & (noised.t <= 1)).all()


@pytest.mark.parametrize("scheduler", [DDPMScheduler(), FlowMatchEulerDiscreteScheduler()])
def test_winner_and_loser_share_noise_and_timestep(scheduler):
    process = NoiseProcess(scheduler)
    winners, losers = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    noised = process.noise(torch.cat([winners, losers]), groups=2, generator=torch.Generator().manual_seed(2))
    assert noised.timesteps.shape == (8,)
    torch.testing.assert_close(noised.timesteps[:4], noised.timesteps[4:])
    # the noise each member received, recovered from x_t and x0 through the scheduler's own forward process
    if process.flow:
        s = noised.t.view(-1, 1, 1, 1)
        eps_w = (noised.x_t[:4] - (1 - s) * winners) / s
        eps_l = (noised.x_t[4:] - (1 - s) * losers) / s
    else:
        abar = scheduler.alphas_cumprod[noised.timesteps[:4]].view(-1, 1, 1, 1)
        eps_w = (noised.x_t[:4] - abar.sqrt() * winners) / (1 - abar).sqrt()
        eps_l = (noised.x_t[4:] - abar.sqrt() * losers) / (1 - abar).sqrt()
    torch.testing.assert_close(eps_w, eps_l, rtol=1e-4, atol=1e-4)


def test_unknown_sampling_is_a_one_line_error():
    with pytest.raises(ValueError, match="trainer.timestep_sampling"):
        NoiseProcess(DDPMScheduler(), timestep_sampling="cosine")


@pytest.mark.parametrize("scheduler", [DDPMScheduler(num_train_timesteps=1000),
                                       FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)])
@pytest.mark.parametrize("mean", [-1.0, 1.0])
def test_logit_normal_draws_the_noise_level_with_the_given_mean_in_both_families(scheduler, mean):
    # SD3's convention: logit(t) ~ N(m, s) for the noise level t, so m > 0 is noisier, whichever way
    # the scheduler's index runs (DDPM: data to noise; flow: noise to data)
    process = NoiseProcess(scheduler, timestep_sampling="logit_normal", logit_mean=mean, logit_std=0.5)
    noised = process.noise(torch.zeros(20_000, 1), generator=torch.Generator().manual_seed(3))
    logit = torch.logit(noised.t.double().clamp(1e-4, 1 - 1e-4))
    assert abs(float(logit.mean()) - mean) < 0.02
    assert abs(float(logit.std()) - 0.5) < 0.02
