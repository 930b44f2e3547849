"""GAPO (prefopt.objectives.GAPO) against numbers computed by hand with ``math``.

L = mean_B [ g_i * ( - log sigma( -(beta/2) d_i ) ) ],  g = 2^{s_w} - 2^{s_l} (default "pow2").
"""

import math

import pytest
import torch
from hand_math import log_sigmoid, sigmoid, t64

from prefopt.objectives import DPO, GAPO

PE = [[0.1000, 0.2000], [0.1200, 0.1500]]
RE = [[0.1001, 0.1997], [0.1197, 0.1502]]
D = [-0.0004, 0.0005]  # d per pair (see test_dpo.py); logits at beta 5000: [1.0, -1.25]
LOGITS = [1.0, -1.25]
SW = [0.9, 0.6]
SL = [0.3, 0.5]

GAPS = {
    "pow2": [2 ** w - 2 ** s_l for w, s_l in zip(SW, SL, strict=True)],
    "pow3": [3 ** w - 3 ** s_l for w, s_l in zip(SW, SL, strict=True)],
    "ratio": [1 - 2 ** s_l / 2 ** w for w, s_l in zip(SW, SL, strict=True)],
}


def call(gapo, pe=PE, re=RE, sw=SW, sl=SL, requires_grad=False):
    pe_t = t64(pe, requires_grad=requires_grad)
    out = gapo(policy_err=pe_t, ref_err=t64(re), reward_w=t64(sw), reward_l=t64(sl))
    return pe_t, out


def test_default_is_pow2_beta_5000():
    gapo = GAPO()
    assert gapo.beta == 5000 and gapo.gap_transform == "pow2"


def test_loss_matches_hand_computed_formula():
    _, (loss, metrics) = call(GAPO(beta=5000))
    g = GAPS["pow2"]
    expected = (g[0] * -log_sigmoid(1.0) + g[1] * -log_sigmoid(-1.25)) / 2
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert metrics["gap_weight"].item() == pytest.approx((g[0] + g[1]) / 2, rel=1e-9)
    # the DPO metrics are there too
    assert metrics["implicit_acc"].item() == pytest.approx(0.5)
    assert metrics["reward_margin"].item() == pytest.approx((1.0 - 1.25) / 2, rel=1e-9)


@pytest.mark.parametrize("transform", ["pow2", "pow3", "ratio"])
def test_each_gap_transform_value(transform):
    _, (loss, metrics) = call(GAPO(beta=5000, gap_transform=transform))
    g = GAPS[transform]
    expected = sum(gi * -log_sigmoid(z) for gi, z in zip(g, LOGITS, strict=True)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert metrics["gap_weight"].item() == pytest.approx(sum(g) / 2, rel=1e-9)


def test_gap_transform_known_values():
    # exact points: s_w = 1, s_l = 0
    for transform, value in [("pow2", 1.0), ("pow3", 2.0), ("ratio", 0.5)]:
        _, (_, metrics) = call(GAPO(beta=5000, gap_transform=transform), pe=[[0.1], [0.1]], re=[[0.1], [0.1]],
                               sw=[1.0], sl=[0.0])
        assert metrics["gap_weight"].item() == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("beta", [100.0, 5000.0])
def test_beta_uses_half_convention(beta):
    _, (loss, _) = call(GAPO(beta=beta))
    expected = sum(g * -log_sigmoid(-(beta / 2) * d) for g, d in zip(GAPS["pow2"], D, strict=True)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_per_pair_weighting_differs_from_batch_mean_weighting():
    _, (loss, _) = call(GAPO(beta=5000))
    g = GAPS["pow2"]
    losses = [-log_sigmoid(z) for z in LOGITS]
    per_pair = (g[0] * losses[0] + g[1] * losses[1]) / 2
    batch_mean = (g[0] + g[1]) / 2 * (losses[0] + losses[1]) / 2  # the original code's form
    assert g[0] != pytest.approx(g[1], rel=1e-3)
    assert abs(per_pair - batch_mean) > 1e-2
    assert loss.item() == pytest.approx(per_pair, rel=1e-9)
    assert loss.item() != pytest.approx(batch_mean, rel=1e-3)


def test_equal_gaps_reduce_to_scaled_dpo():
    # s_w - s_l the same for every pair => the same g, loss = g * DPO loss
    sw, sl = [0.8, 0.8], [0.4, 0.4]
    _, (loss, _) = call(GAPO(beta=5000), sw=sw, sl=sl)
    dpo_loss, _ = DPO(beta=5000)(policy_err=t64(PE), ref_err=t64(RE))
    g = 2 ** 0.8 - 2 ** 0.4
    assert loss.item() == pytest.approx(g * dpo_loss.item(), rel=1e-9)


def test_gradient_direction_and_value():
    pe, (loss, _) = call(GAPO(beta=5000), requires_grad=True)
    loss.backward()
    for i, (g, z) in enumerate(zip(GAPS["pow2"], LOGITS, strict=True)):
        expected = g * 2500 * sigmoid(-z) / 2
        assert pe.grad[0, i].item() == pytest.approx(expected, rel=1e-9)
        assert pe.grad[1, i].item() == pytest.approx(-expected, rel=1e-9)
    assert (pe.grad[0] > 0).all()  # lowering winners' error lowers the loss
    assert (pe.grad[1] < 0).all()  # lowering losers' error raises it


def test_policy_equals_reference_gives_mean_gap_times_log2():
    pe = [[0.3, 0.1, 0.7], [0.2, 0.4, 0.05]]
    sw, sl = [0.9, 0.7, 0.55], [0.1, 0.6, 0.5]
    loss, metrics = GAPO(beta=5000)(policy_err=t64(pe), ref_err=t64(pe), reward_w=t64(sw), reward_l=t64(sl))
    mean_g = sum(2 ** w - 2 ** s_l for w, s_l in zip(sw, sl, strict=True)) / 3
    assert loss.item() == pytest.approx(mean_g * math.log(2), rel=1e-12)
    assert metrics["implicit_acc"].item() == 0.5


def test_loss_dtype_follows_errors():
    loss, metrics = GAPO(beta=5000)(policy_err=torch.tensor(PE, dtype=torch.float32),
                                    ref_err=torch.tensor(RE, dtype=torch.float32),
                                    reward_w=t64(SW), reward_l=t64(SL))
    assert loss.dtype == torch.float32


def test_invalid_gap_transform_raises():
    with pytest.raises(ValueError):
        GAPO(beta=5000, gap_transform="linear")


@pytest.mark.parametrize("beta", [0.0, -1.0])
def test_non_positive_beta_raises(beta):
    with pytest.raises(ValueError):
        GAPO(beta=beta)


def test_unpaired_errors_raise():
    with pytest.raises(ValueError):
        GAPO(beta=5000)(policy_err=torch.rand(3), ref_err=torch.rand(3), reward_w=torch.rand(3),
                        reward_l=torch.rand(3))


def test_paired_rewards_raise():
    with pytest.raises(ValueError):
        GAPO(beta=5000)(policy_err=torch.rand(2, 3), ref_err=torch.rand(2, 3), reward_w=torch.rand(2, 3),
                        reward_l=torch.rand(3))
