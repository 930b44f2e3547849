"""HG-DPO (prefopt.objectives.HGDPO): Diffusion-DPO plus a statistics-matching term, and its curriculum."""

import math

import pytest
import torch
from hand_math import log_sigmoid, t64

from prefopt.objectives import DPO, HGDPO

PE = [[0.1000, 0.2000], [0.1200, 0.1500]]
RE = [[0.1001, 0.1997], [0.1197, 0.1502]]
DPO_EXPECTED = -(log_sigmoid(1.0) + log_sigmoid(-1.25)) / 2  # beta 5000, d = [-0.0004, 0.0005]

# (N, 2C) with C = 2: [mu_0, mu_1, std_0, std_1]
POLICY_STATS = [[0.1, 0.2, 1.0, 1.1], [0.0, 0.5, 0.9, 1.0]]
REF_STATS = [[0.0, 0.2, 1.0, 1.0], [0.1, 0.3, 1.0, 1.0]]
# squared diffs: row 0: 0.01 + 0 + 0 + 0.01 = 0.02 ; row 1: 0.01 + 0.04 + 0.01 + 0 = 0.06
# mean over rows 0.04, divided by C = 2 -> 0.02
STAT_EXPECTED = 0.02


def test_defaults():
    h = HGDPO()
    assert h.beta == 5000 and h.stage == "hard" and h.reference == "base" and h.stat_weight == 1.0
    assert list(h.stage_fractions) == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert HGDPO.paired is True


def test_without_stats_equals_dpo_by_hand():
    loss, metrics = HGDPO(beta=5000)(policy_err=t64(PE), ref_err=t64(RE))
    assert loss.item() == pytest.approx(DPO_EXPECTED, rel=1e-9)
    assert metrics["dpo_loss"].item() == pytest.approx(DPO_EXPECTED, rel=1e-9)
    assert "stat_loss" not in metrics
    assert metrics["implicit_acc"].item() == pytest.approx(0.5)


@pytest.mark.parametrize("stage", ["easy", "normal", "hard"])
def test_equals_dpo_when_stat_weight_zero(stage):
    loss, metrics = HGDPO(beta=5000, stage=stage, stat_weight=0.0)(
        policy_err=t64(PE), ref_err=t64(RE), policy_stats=t64(POLICY_STATS), ref_stats=t64(REF_STATS))
    dpo_loss, dpo_metrics = DPO(beta=5000)(policy_err=t64(PE), ref_err=t64(RE))
    assert loss.item() == pytest.approx(dpo_loss.item(), rel=1e-12)
    assert loss.item() == pytest.approx(DPO_EXPECTED, rel=1e-9)
    for key, value in dpo_metrics.items():
        assert metrics[key].item() == pytest.approx(value.item(), rel=1e-12)


@pytest.mark.parametrize("which", ["policy_stats", "ref_stats", "both"])
def test_equals_dpo_when_stats_missing(which):
    kwargs = {"policy_stats": t64(POLICY_STATS), "ref_stats": t64(REF_STATS)}
    if which == "both":
        kwargs = {}
    else:
        kwargs.pop(which)
    loss, _ = HGDPO(beta=5000, stat_weight=3.0)(policy_err=t64(PE), ref_err=t64(RE), **kwargs)
    assert loss.item() == pytest.approx(DPO_EXPECTED, rel=1e-9)


@pytest.mark.parametrize("stat_weight", [1.0, 0.5, 10.0])
def test_stat_term_value_by_hand(stat_weight):
    loss, metrics = HGDPO(beta=5000, stat_weight=stat_weight)(
        policy_err=t64(PE), ref_err=t64(RE), policy_stats=t64(POLICY_STATS), ref_stats=t64(REF_STATS))
    # the statistics term is computed in float32 by design, hence the looser tolerance
    assert metrics["stat_loss"].item() == pytest.approx(STAT_EXPECTED, rel=1e-6)
    assert metrics["dpo_loss"].item() == pytest.approx(DPO_EXPECTED, rel=1e-9)
    assert loss.item() == pytest.approx(DPO_EXPECTED + stat_weight * STAT_EXPECTED, rel=1e-6)


def test_stat_term_zero_when_stats_match():
    stats = t64(POLICY_STATS)
    loss, metrics = HGDPO(beta=5000)(policy_err=t64(PE), ref_err=t64(RE), policy_stats=stats,
                                     ref_stats=stats.clone())
    assert metrics["stat_loss"].item() == 0.0
    assert loss.item() == pytest.approx(DPO_EXPECTED, rel=1e-9)


def test_stat_term_gradient_pulls_policy_stats_to_reference():
    stats = torch.tensor(POLICY_STATS, dtype=torch.float32, requires_grad=True)
    loss, _ = HGDPO(beta=5000, stat_weight=1.0)(policy_err=t64(PE), ref_err=t64(RE), policy_stats=stats,
                                                ref_stats=torch.tensor(REF_STATS, dtype=torch.float32))
    loss.backward()
    # d/dp of sum_rows_mean (p - r)^2 / C = 2 (p - r) / (N C) = (p - r) / 2 for N = C = 2
    expected = [[(p - r) / 2 for p, r in zip(prow, rrow, strict=True)] for prow, rrow in zip(POLICY_STATS, REF_STATS, strict=True)]
    assert torch.allclose(stats.grad, torch.tensor(expected, dtype=torch.float32), atol=1e-6)


def test_dpo_gradient_direction():
    pe = t64(PE, requires_grad=True)
    loss, _ = HGDPO(beta=5000)(policy_err=pe, ref_err=t64(RE))
    loss.backward()
    assert (pe.grad[0] > 0).all() and (pe.grad[1] < 0).all()


def test_policy_equals_reference_gives_log2():
    pe = t64(PE)
    loss, metrics = HGDPO(beta=5000)(policy_err=pe, ref_err=pe.clone())
    assert loss.item() == pytest.approx(math.log(2), rel=1e-12)
    assert metrics["implicit_acc"].item() == 0.5


# --- curriculum ---------------------------------------------------------------------------------

def test_curriculum_equal_thirds_of_ten():
    plan = HGDPO().curriculum(10)
    assert [stage for stage, _ in plan] == ["easy", "normal", "hard"]
    assert sum(steps for _, steps in plan) == 10
    # round(10/3) = 3, round(20/3) = 7, 10 -> 3, 4, 3
    assert plan == [("easy", 3), ("normal", 4), ("hard", 3)]


def test_curriculum_equal_thirds_of_divisible_total():
    assert HGDPO().curriculum(300) == [("easy", 100), ("normal", 100), ("hard", 100)]


def test_curriculum_unnormalized_fractions():
    assert HGDPO(stage_fractions=[1, 1, 2]).curriculum(8) == [("easy", 2), ("normal", 2), ("hard", 4)]


def test_curriculum_zero_fraction_drops_stage():
    assert HGDPO(stage_fractions=[0.5, 0.0, 0.5]).curriculum(10) == [("easy", 5), ("hard", 5)]
    assert HGDPO(stage_fractions=[0.0, 0.0, 1.0]).curriculum(10) == [("hard", 10)]
    assert HGDPO(stage_fractions=[0.0, 1.0, 0.0]).curriculum(7) == [("normal", 7)]


@pytest.mark.parametrize("fractions", [[1 / 3, 1 / 3, 1 / 3], [0.2, 0.3, 0.5], [1, 2, 3], [0.7, 0.0, 0.3],
                                       [0.01, 0.01, 0.98], [5, 0, 0]])
def test_curriculum_steps_always_sum_to_total_and_keep_order(fractions):
    h = HGDPO(stage_fractions=fractions)
    order = ["easy", "normal", "hard"]
    for total in range(0, 60):
        plan = h.curriculum(total)
        assert sum(steps for _, steps in plan) == total
        assert all(steps > 0 for _, steps in plan)
        stages = [stage for stage, _ in plan]
        assert stages == sorted(stages, key=order.index)
        assert len(set(stages)) == len(stages)
        for stage, fraction in zip(order, fractions, strict=True):
            if fraction == 0:
                assert stage not in stages


def test_curriculum_zero_steps_is_empty():
    assert HGDPO().curriculum(0) == []


# --- invalid configuration ----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"stage": "medium"},
    {"stage": "Hard"},
    {"reference": "foo"},
    {"reference": "previous"},
    {"stage_fractions": [0.5, 0.5]},
    {"stage_fractions": [0.25, 0.25, 0.25, 0.25]},
    {"stage_fractions": [0.5, -0.1, 0.6]},
    {"stage_fractions": [0.0, 0.0, 0.0]},
    {"stat_weight": -1.0},
    {"beta": 0.0},
    {"beta": -5000.0},
])
def test_invalid_config_raises(kwargs):
    with pytest.raises(ValueError):
        HGDPO(**kwargs)


@pytest.mark.parametrize("reference", ["base", "previous_stage"])
def test_valid_references(reference):
    assert HGDPO(reference=reference).reference == reference


def test_unpaired_errors_raise():
    with pytest.raises(ValueError):
        HGDPO(beta=5000)(policy_err=torch.rand(4), ref_err=torch.rand(4))
