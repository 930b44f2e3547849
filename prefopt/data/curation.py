"""Curation: scored samples -> what each objective trains on (SPEC-methods.md). Pure functions of
manifest rows (dicts with ``score``, ``prompt_index``); ``prefopt.curate`` reads and writes the files.

    top        IPA, SFT: the top ``fraction`` of scored samples (ceil(fraction * N), ties at the cut
               broken by manifest order), or every sample with score >= ``threshold``
    pairs      Diffusion-DPO, GAPO: pairs of samples of the same prompt, the higher score the winner;
               ``best_worst``: one pair per prompt (its best and worst sample); ``all``: every pair of
               a prompt's samples; a pair with s_w - s_l <= ``min_gap`` is a tie, dropped and counted
    worst      HG-DPO's losers: each prompt's worst sample (its winners are real images or
               reconstructions of them, prefopt/curate.py)

Rows without a score are left out and counted (``unscored``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations


def _scored(rows: list[dict]) -> tuple[list[dict], int]:
    scored = [row for row in rows if isinstance(row.get("score"), int | float)]
    return scored, len(rows) - len(scored)


def _groups(rows: list[dict]) -> dict:
    """Rows by prompt (``prompt_index``, else the prompt text), in manifest order."""
    groups = defaultdict(list)
    for row in rows:
        groups[row.get("prompt_index", row.get("prompt", ""))].append(row)
    return groups


def top(rows: list[dict], fraction: float, threshold: float | None = None) -> tuple[list[dict], dict]:
    scored, unscored = _scored(rows)
    if threshold is not None:
        kept = [row for row in scored if row["score"] >= threshold]
    else:
        ranked = sorted(scored, key=lambda row: -row["score"])  # stable: manifest order among equal scores
        kept = ranked[:math.ceil(fraction * len(scored))]
    return kept, {"rows": len(rows), "unscored": unscored, "kept": len(kept), "dropped": len(scored) - len(kept)}


def pairs(rows: list[dict], pairing: str, min_gap: float = 0.0) -> tuple[list[tuple[dict, dict]], dict]:
    """(winner row, loser row) pairs with s_w - s_l > min_gap; ties dropped and counted."""
    scored, unscored = _scored(rows)
    groups = _groups(scored)
    kept, ties, single = [], 0, 0
    for group in groups.values():
        if len(group) < 2:
            single += 1
            continue
        if pairing == "best_worst":
            candidates = [(max(group, key=lambda row: row["score"]), min(group, key=lambda row: row["score"]))]
        else:
            candidates = [(a, b) if a["score"] >= b["score"] else (b, a) for a, b in combinations(group, 2)]
        for winner, loser in candidates:
            if winner["score"] - loser["score"] <= min_gap:
                ties += 1
            else:
                kept.append((winner, loser))
    return kept, {"rows": len(rows), "unscored": unscored, "prompts": len(groups), "single_sample_prompts": single,
                  "pairs": len(kept), "dropped_ties": ties}


def worst(rows: list[dict]) -> dict:
    """Each prompt's lowest-scored sample, by prompt key."""
    scored, _ = _scored(rows)
    return {key: min(group, key=lambda row: row["score"]) for key, group in _groups(scored).items()}
