"""Diffusion-DPO (prefopt.objectives.DPO) against numbers computed by hand with ``math``.

L = - mean_B log sigma( -(beta/2) * d ),  d = (pe_w - re_w) - (pe_l - re_l); row 0 winners.
"""

import math

import pytest
import torch
from hand_math import log_sigmoid, sigmoid

from prefopt.objectives import DPO

# Two pairs; the per-pair d values are small, as real denoising-error differences are.
PE = [[0.1000, 0.2000], [0.1200, 0.1500]]
RE = [[0.1001, 0.1997], [0.1197, 0.1502]]
# d_0 = (0.1000 - 0.1001) - (0.1200 - 0.1197) = -0.0001 - 0.0003 = -0.0004
# d_1 = (0.2000 - 0.1997) - (0.1500 - 0.1502) =  0.0003 + 0.0002 =  0.0005
D = [-0.0004, 0.0005]


def tensors(pe=PE, re=RE, requires_grad=False):
    pe_t = torch.tensor(pe, dtype=torch.float64, requires_grad=requires_grad)
    re_t = torch.tensor(re, dtype=torch.float64)
    return pe_t, re_t


def test_loss_matches_hand_computed_formula_default_beta():
    pe, re = tensors()
    loss, metrics = DPO(beta=5000)(policy_err=pe, ref_err=re)
    # logits = -(5000/2) * d = [1.0, -1.25]
    expected = -(log_sigmoid(1.0) + log_sigmoid(-1.25)) / 2
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert metrics["reward_margin"].item() == pytest.approx((1.0 - 1.25) / 2, rel=1e-9)
    assert metrics["implicit_acc"].item() == pytest.approx(0.5)


def test_default_beta_is_5000():
    pe, re = tensors()
    assert DPO().beta == 5000
    assert DPO()(policy_err=pe, ref_err=re)[0].item() == pytest.approx(
        DPO(beta=5000)(policy_err=pe, ref_err=re)[0].item(), rel=1e-12)


@pytest.mark.parametrize("beta", [100.0, 2000.0, 5000.0, 12000.0])
def test_beta_uses_half_convention(beta):
    pe, re = tensors()
    loss, _ = DPO(beta=beta)(policy_err=pe, ref_err=re)
    expected = -sum(log_sigmoid(-(beta / 2) * d) for d in D) / len(D)
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_beta_5000_equals_sd15_form_with_beta_2500_without_half():
    # diffusers' SD1.5 example: -log sigma(-beta' * d) with beta' = 2500 (no 1/2).
    pe, re = tensors()
    loss, _ = DPO(beta=5000)(policy_err=pe, ref_err=re)
    sd15 = -sum(log_sigmoid(-2500.0 * d) for d in D) / len(D)
    assert loss.item() == pytest.approx(sd15, rel=1e-9)
    # ...and is NOT the form without the 1/2 at beta 5000
    no_half = -sum(log_sigmoid(-5000.0 * d) for d in D) / len(D)
    assert abs(loss.item() - no_half) > 1e-3


def test_sign_convention_policy_better_on_winner_gives_low_loss():
    # policy lowers the winner's error relative to the reference, loser unchanged: d < 0.
    pe, re = tensors(pe=[[0.0998], [0.3]], re=[[0.1000], [0.3]])
    loss, metrics = DPO(beta=5000)(policy_err=pe, ref_err=re)
    # d = -0.0002 -> logit = +0.5
    assert loss.item() == pytest.approx(-log_sigmoid(0.5), rel=1e-9)
    assert loss.item() < math.log(2)
    assert metrics["implicit_acc"].item() == 1.0
    assert metrics["reward_margin"].item() == pytest.approx(0.5, rel=1e-9)


def test_sign_convention_policy_better_on_loser_gives_high_loss():
    # policy lowers the loser's error: d > 0, the wrong direction.
    pe, re = tensors(pe=[[0.1], [0.2998]], re=[[0.1], [0.3000]])
    loss, metrics = DPO(beta=5000)(policy_err=pe, ref_err=re)
    assert loss.item() == pytest.approx(-log_sigmoid(-0.5), rel=1e-9)
    assert loss.item() > math.log(2)
    assert metrics["implicit_acc"].item() == 0.0
    assert metrics["reward_margin"].item() == pytest.approx(-0.5, rel=1e-9)


def test_swapping_winner_and_loser_flips_logits():
    pe, re = tensors()
    loss_swapped, metrics_swapped = DPO(beta=5000)(policy_err=pe.flip(0), ref_err=re.flip(0))
    expected = -(log_sigmoid(-1.0) + log_sigmoid(1.25)) / 2
    assert loss_swapped.item() == pytest.approx(expected, rel=1e-9)
    assert metrics_swapped["reward_margin"].item() == pytest.approx((-1.0 + 1.25) / 2, rel=1e-9)


def test_gradient_direction_and_value():
    pe, re = tensors(requires_grad=True)
    beta, batch = 5000.0, 2
    loss, _ = DPO(beta=beta)(policy_err=pe, ref_err=re)
    loss.backward()
    # dL/dpe_w,i = (beta/2) * sigma(-z_i) / B ; dL/dpe_l,i = -(that), z_i = -(beta/2) d_i
    for i, d in enumerate(D):
        z = -(beta / 2) * d
        g = (beta / 2) * sigmoid(-z) / batch
        assert pe.grad[0, i].item() == pytest.approx(g, rel=1e-9)
        assert pe.grad[1, i].item() == pytest.approx(-g, rel=1e-9)
    assert (pe.grad[0] > 0).all()  # lowering the winner's error lowers the loss
    assert (pe.grad[1] < 0).all()  # lowering the loser's error raises the loss


def test_lowering_errors_moves_loss_in_expected_direction():
    dpo = DPO(beta=5000)
    pe, re = tensors()
    base = dpo(policy_err=pe, ref_err=re)[0].item()
    eps = 1e-5
    lower_w = pe.clone()
    lower_w[0] -= eps
    lower_l = pe.clone()
    lower_l[1] -= eps
    assert dpo(policy_err=lower_w, ref_err=re)[0].item() < base
    assert dpo(policy_err=lower_l, ref_err=re)[0].item() > base


def test_reference_errors_receive_opposite_gradient():
    pe = torch.tensor(PE, dtype=torch.float64)
    re = torch.tensor(RE, dtype=torch.float64, requires_grad=True)
    DPO(beta=5000)(policy_err=pe, ref_err=re)[0].backward()
    assert (re.grad[0] < 0).all()
    assert (re.grad[1] > 0).all()


def test_policy_equals_reference_gives_log2_and_half_accuracy():
    pe = torch.tensor([[0.3, 0.1, 0.7], [0.2, 0.4, 0.05]], dtype=torch.float64)
    loss, metrics = DPO(beta=5000)(policy_err=pe, ref_err=pe.clone())
    assert loss.item() == pytest.approx(math.log(2), rel=1e-12)
    assert metrics["implicit_acc"].item() == 0.5
    assert metrics["reward_margin"].item() == 0.0


def test_implicit_accuracy_mix_of_positive_negative_and_ties():
    # Dyadic values so the ties are exact zeros in floating point.
    pe = [[0.25, 0.5, 0.5, 0.125, 0.25], [0.5, 0.25, 0.25, 0.5, 0.25]]
    re = [[0.5, 0.25, 0.25, 0.5, 0.25], [0.5, 0.25, 0.0, 0.5, 0.25]]
    # d: (-0.25 - 0) = -0.25 -> +; (0.25 - 0) = 0.25 -> -; (0.25 - 0.25) = 0 -> tie;
    #    (-0.375 - 0) -> +; (0 - 0) = 0 -> tie (pe == re)
    pe_t, re_t = tensors(pe=pe, re=re)
    _, metrics = DPO(beta=4)(policy_err=pe_t, ref_err=re_t)
    assert metrics["implicit_acc"].item() == pytest.approx((1 + 0 + 0.5 + 1 + 0.5) / 5)
    # logits = -2 d = [0.5, -0.5, 0, 0.75, 0]
    assert metrics["reward_margin"].item() == pytest.approx((0.5 - 0.5 + 0 + 0.75 + 0) / 5, rel=1e-12)


def test_error_metrics_are_row_means():
    pe, re = tensors()
    _, metrics = DPO(beta=5000)(policy_err=pe, ref_err=re)
    assert metrics["policy_err_w"].item() == pytest.approx((0.1000 + 0.2000) / 2, rel=1e-12)
    assert metrics["policy_err_l"].item() == pytest.approx((0.1200 + 0.1500) / 2, rel=1e-12)
    assert metrics["ref_err_w"].item() == pytest.approx((0.1001 + 0.1997) / 2, rel=1e-12)
    assert metrics["ref_err_l"].item() == pytest.approx((0.1197 + 0.1502) / 2, rel=1e-12)
    for value in metrics.values():
        assert not value.requires_grad


def test_metrics_are_detached():
    pe, re = tensors(requires_grad=True)
    loss, metrics = DPO(beta=5000)(policy_err=pe, ref_err=re)
    assert loss.requires_grad
    assert all(not v.requires_grad for v in metrics.values())


def test_large_margins_are_numerically_stable():
    pe, re = tensors(pe=[[0.0], [1.0]], re=[[1.0], [0.0]])  # d = -2 -> logit 5000
    loss, _ = DPO(beta=5000)(policy_err=pe, ref_err=re)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-12)
    loss_bad, _ = DPO(beta=5000)(policy_err=re, ref_err=pe)  # logit -5000: loss ~ 5000
    assert torch.isfinite(loss_bad) and loss_bad.item() == pytest.approx(5000.0, rel=1e-9)


@pytest.mark.parametrize("beta", [0.0, -1.0, -5000.0])
def test_non_positive_beta_raises(beta):
    with pytest.raises(ValueError):
        DPO(beta=beta)


@pytest.mark.parametrize("shape_pe, shape_re", [((4,), (2, 4)), ((2, 4), (4,)), ((4,), (4,)), ((3, 4), (3, 4)),
                                                ((2, 4, 1), (2, 4, 1))])
def test_wrong_shapes_raise(shape_pe, shape_re):
    with pytest.raises(ValueError):
        DPO(beta=5000)(policy_err=torch.rand(shape_pe), ref_err=torch.rand(shape_re))


def test_paired_flag():
    assert DPO.paired is True
