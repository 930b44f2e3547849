"""SFT (prefopt.objectives.SFT): the plain mean denoising error on winners."""

import pytest
import torch
from hand_math import t64

from prefopt.objectives import REGISTRY, SFT, objective_inputs


def test_mean_of_unpaired_errors():
    loss, metrics = SFT()(policy_err=t64([0.1, 0.4, 0.25, 0.05]))
    assert loss.dim() == 0
    assert loss.item() == pytest.approx((0.1 + 0.4 + 0.25 + 0.05) / 4, rel=1e-12)
    assert metrics["policy_err"].item() == pytest.approx(0.2, rel=1e-12)
    assert not metrics["policy_err"].requires_grad


def test_paired_errors_use_winners_row_only():
    loss, _ = SFT()(policy_err=t64([[0.1, 0.3], [10.0, 20.0]]))
    assert loss.item() == pytest.approx(0.2, rel=1e-12)


def test_gradient_reaches_winners_only():
    pe = t64([[0.1, 0.3, 0.5, 0.7], [1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    SFT()(policy_err=pe)[0].backward()
    assert torch.equal(pe.grad[0], torch.full((4,), 0.25, dtype=torch.float64))
    assert torch.equal(pe.grad[1], torch.zeros(4, dtype=torch.float64))


def test_lower_error_lower_loss():
    pe = t64([0.3, 0.2])
    assert SFT()(policy_err=pe - 0.01)[0].item() < SFT()(policy_err=pe)[0].item()


def test_registry_and_inputs():
    assert set(REGISTRY) == {"dpo", "ipa", "hgdpo", "gapo", "sft"}
    assert REGISTRY["sft"] is SFT
    assert objective_inputs(SFT()) == ("policy_err",)
    assert objective_inputs(REGISTRY["dpo"]()) == ("policy_err", "ref_err")
    assert objective_inputs(REGISTRY["ipa"]()) == ("policy_err", "ref_err", "t")
    assert objective_inputs(REGISTRY["gapo"]()) == ("policy_err", "ref_err", "reward_w", "reward_l")
    assert objective_inputs(REGISTRY["hgdpo"]()) == ("policy_err", "ref_err", "policy_stats", "ref_stats")
