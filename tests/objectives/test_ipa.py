"""IPA (prefopt.objectives.IPA) against numbers computed by hand with ``math``.

L = - mean_B log sigma( (beta/2) * (1 - t)^2 * (re - pe) ), (B,) inputs, no loser.
"""

import math

import pytest
import torch
from hand_math import log_sigmoid, sigmoid, t64

from prefopt.objectives import IPA

PE = [0.10, 0.30, 0.50]
RE = [0.12, 0.29, 0.50]
T = [0.5, 0.0, 0.25]
# logits at beta 600: 300 * (1-t)^2 * (re - pe)
#   300 * 0.25   * 0.02  = 1.5
#   300 * 1.0    * -0.01 = -3.0
#   300 * 0.5625 * 0.0   = 0.0
LOGITS = [1.5, -3.0, 0.0]


def test_loss_matches_hand_computed_formula():
    loss, metrics = IPA(beta=600)(policy_err=t64(PE), ref_err=t64(RE), t=t64(T))
    expected = -sum(log_sigmoid(z) for z in LOGITS) / 3
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert metrics["reward_margin"].item() == pytest.approx(sum(LOGITS) / 3, rel=1e-9)
    assert metrics["implicit_acc"].item() == pytest.approx((1 + 0 + 0.5) / 3)
    assert metrics["policy_err"].item() == pytest.approx(sum(PE) / 3, rel=1e-12)
    assert metrics["ref_err"].item() == pytest.approx(sum(RE) / 3, rel=1e-12)


def test_default_beta_is_600():
    assert IPA().beta == 600


@pytest.mark.parametrize("beta", [2.0, 100.0, 600.0, 1000.0])
def test_beta_uses_half_convention(beta):
    loss, _ = IPA(beta=beta)(policy_err=t64(PE), ref_err=t64(RE), t=t64(T))
    expected = -sum(log_sigmoid((beta / 2) * (1 - t) ** 2 * (r - p)) for p, r, t in zip(PE, RE, T, strict=True)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_time_weight_is_one_minus_t_squared():
    # same error gap, different t: the logit scales by (1 - t)^2
    pe, re = t64([0.0, 0.0, 0.0]), t64([0.01, 0.01, 0.01])
    for t, weight in [(0.0, 1.0), (0.5, 0.25), (0.75, 0.0625), (0.9, 0.01)]:
        loss, _ = IPA(beta=600)(policy_err=pe, ref_err=re, t=t64([t] * 3))
        assert loss.item() == pytest.approx(-log_sigmoid(300 * weight * 0.01), rel=1e-9)


def test_lower_policy_error_gives_lower_loss_and_positive_gradient():
    pe = t64(PE, requires_grad=True)
    loss, _ = IPA(beta=600)(policy_err=pe, ref_err=t64(RE), t=t64(T))
    loss.backward()
    # dL/dpe_i = (beta/2) (1 - t_i)^2 sigma(-z_i) / B
    for i, (z, t) in enumerate(zip(LOGITS, T, strict=True)):
        assert pe.grad[i].item() == pytest.approx(300 * (1 - t) ** 2 * sigmoid(-z) / 3, rel=1e-9)
    assert (pe.grad > 0).all()
    lowered = t64(PE) - 1e-4
    assert IPA(beta=600)(policy_err=lowered, ref_err=t64(RE), t=t64(T))[0].item() < loss.item()


def test_at_t_equal_one_loss_is_log2_and_gradient_zero():
    pe = t64([0.1, 0.9, 0.4], requires_grad=True)
    re = t64([0.5, 0.2, 0.4])
    loss, metrics = IPA(beta=600)(policy_err=pe, ref_err=re, t=t64([1.0, 1.0, 1.0]))
    assert loss.item() == pytest.approx(math.log(2), rel=1e-15)
    assert metrics["implicit_acc"].item() == 0.5
    loss.backward()
    assert torch.equal(pe.grad, torch.zeros(3, dtype=torch.float64))


def test_policy_equals_reference_gives_log2():
    pe = t64([0.3, 0.1, 0.7])
    loss, metrics = IPA(beta=600)(policy_err=pe, ref_err=pe.clone(), t=t64([0.1, 0.5, 0.9]))
    assert loss.item() == pytest.approx(math.log(2), rel=1e-12)
    assert metrics["implicit_acc"].item() == 0.5
    assert metrics["reward_margin"].item() == 0.0


def test_metrics_are_detached():
    pe = t64(PE, requires_grad=True)
    loss, metrics = IPA(beta=600)(policy_err=pe, ref_err=t64(RE), t=t64(T))
    assert loss.requires_grad
    assert all(not v.requires_grad for v in metrics.values())


@pytest.mark.parametrize("beta", [0.0, -600.0])
def test_non_positive_beta_raises(beta):
    with pytest.raises(ValueError):
        IPA(beta=beta)


@pytest.mark.parametrize("which", ["policy_err", "ref_err", "t"])
def test_paired_shape_raises(which):
    inputs = {"policy_err": torch.rand(3), "ref_err": torch.rand(3), "t": torch.rand(3)}
    inputs[which] = torch.rand(2, 3)
    with pytest.raises(ValueError):
        IPA(beta=600)(**inputs)


def test_all_paired_inputs_raise():
    with pytest.raises(ValueError):
        IPA(beta=600)(policy_err=torch.rand(2, 3), ref_err=torch.rand(2, 3), t=torch.rand(2, 3))


def test_paired_flag():
    assert IPA.paired is False
