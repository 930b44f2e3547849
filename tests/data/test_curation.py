"""Curation rules on hand-made rows: the kept samples and pairs, and the counts, written out here."""

from __future__ import annotations

from prefopt.data import curation


def _rows(scores_by_prompt):
    return [{"path": f"{i}_{j}.png", "prompt_index": i, "score": s}
            for i, scores in enumerate(scores_by_prompt) for j, s in enumerate(scores)]


def test_top_fraction_keeps_the_ceiling_of_the_best_with_ties_in_manifest_order():
    rows = _rows([[0.2, 0.9, 0.5], [0.9, 0.1]]) + [{"path": "x.png", "prompt_index": 2}]  # one unscored
    kept, counts = curation.top(rows, fraction=0.5)
    assert [r["path"] for r in kept] == ["0_1.png", "1_0.png", "0_2.png"]  # ceil(0.5 * 5) = 3
    assert counts == {"rows": 6, "unscored": 1, "kept": 3, "dropped": 2}
    kept, counts = curation.top(rows, fraction=0.5, threshold=0.5)
    assert [r["path"] for r in kept] == ["0_1.png", "0_2.png", "1_0.png"] and counts["kept"] == 3


def test_best_worst_pairs_drop_ties_and_single_sample_prompts():
    rows = _rows([[0.2, 0.9, 0.5], [0.4, 0.4], [0.7], [0.3, 0.35]])
    pairs, counts = curation.pairs(rows, "best_worst")
    assert [(w["path"], loser["path"]) for w, loser in pairs] == [("0_1.png", "0_0.png"), ("3_1.png", "3_0.png")]
    assert counts == {"rows": 8, "unscored": 0, "prompts": 4, "single_sample_prompts": 1, "pairs": 2,
                      "dropped_ties": 1}
    pairs, counts = curation.pairs(rows, "best_worst", min_gap=0.1)  # 0.35 - 0.3 <= 0.1: a tie too
    assert len(pairs) == 1 and counts["dropped_ties"] == 2


def test_all_pairs_orient_by_score_and_count_every_tie():
    rows = _rows([[0.5, 0.9, 0.5, 0.1]])
    pairs, counts = curation.pairs(rows, "all")
    assert sorted((w["path"], loser["path"]) for w, loser in pairs) == sorted([
        ("0_1.png", "0_0.png"), ("0_0.png", "0_3.png"), ("0_1.png", "0_2.png"), ("0_1.png", "0_3.png"),
        ("0_2.png", "0_3.png")])
    assert all(w["score"] > loser["score"] for w, loser in pairs)
    assert (counts["pairs"], counts["dropped_ties"]) == (5, 1)  # 4 choose 2 = 6: 5 pairs, (0_0, 0_2) tie


def test_worst_per_prompt():
    worst = curation.worst(_rows([[0.2, 0.9, 0.1], [0.4]]))
    assert {k: r["path"] for k, r in worst.items()} == {0: "0_2.png", 1: "1_0.png"}
