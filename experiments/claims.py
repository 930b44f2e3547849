"""The papers' claims, tested on SynthHands (issue 26): reads the claim sweeps and prints the claims
table of experiments/README.md with its verdicts.

    python -m prefopt.train -m experiment=claim_ipa_dpo            # and claim_hand_aware, claim_hgdpo_curriculum,
    python experiments/claims.py multirun/claims                   # claim_gapo_dpo, claim_dpo_sft (conf/experiment/)

Each claim compares two arms of one sweep (``multirun/claims/<sweep>/<time>``, the newest) over the
same seeds. Per named measure: the per-seed paired difference, claimed arm minus the other (FD: the
other minus the claimed, so that positive always favours the claim), its mean and Student-t 95%
interval over seeds. The measure holds when the interval lies above 0 (a "reaches" claim: above
-MARGIN, a non-inferiority margin). Verdict: reproduced when every named measure holds, not
reproduced when none does, mixed otherwise. The held-out judge (the feature classifier) and FD are
printed beside every claim whether named or not.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from prefopt.evaluation.stats import seeds_ci
from prefopt.report import label_arms, load_runs

MARGIN = 0.05  # good-hand rate points a "reaches" claim may fall short by


@dataclass(frozen=True)
class Claim:
    text: str
    sweep: str  # multirun/claims/<sweep>, made by experiment=claim_<sweep>
    claimed: str  # the arm the paper says wins (prefopt.report's arm label)
    other: str
    measures: tuple[str, ...] = ("good_rate",)
    reaches: bool = False  # non-inferiority (within MARGIN) instead of superiority


CLAIMS = (
    Claim("IPA reaches DPO's gain without pairs", "ipa_dpo", "ipa", "dpo", reaches=True),
    Claim("Hand-aware local optimization helps the hands (IPA)", "hand_aware", "ipa hand_aware.enabled=True",
          "ipa hand_aware.enabled=False"),
    Claim("Hand-aware local optimization helps the hands (DPO)", "hand_aware", "dpo hand_aware.enabled=True",
          "dpo hand_aware.enabled=False"),
    Claim("HG-DPO's curriculum beats one-stage real-winner DPO (hard stage only)", "hgdpo_curriculum",
          "hgdpo objective.stage_fractions=[1,1,1]", "hgdpo objective.stage_fractions=[0,0,1]", ("good_rate", "fd")),
    Claim("HG-DPO's curriculum beats the easy stage only", "hgdpo_curriculum", "hgdpo objective.stage_fractions=[1,1,1]",
          "hgdpo objective.stage_fractions=[1,0,0]", ("good_rate", "fd")),
    Claim("GAPO beats DPO at equal steps and pairs", "gapo_dpo", "gapo", "dpo"),
    Claim("DPO beats SFT on the winners of the same pairs", "dpo_sft", "dpo", "sft"),
)
SHOWN = ("good_rate", "fd", "classifier_rate")
NAMES = {"good_rate": "good-hand rate (points)", "fd": "FD", "classifier_rate": "judge (points)"}


def arms(sweep: Path) -> dict[str, dict[int, dict]]:
    """{arm: {seed: the aligned model's evaluation}} of one sweep."""
    runs = load_runs(sweep)
    label_arms(runs)
    found: dict[str, dict[int, dict]] = {}
    for run in runs:
        found.setdefault(run["arm"], {})[run["summary"]["seed"]] = run["aligned"]
    return found


def paired(found: dict[str, dict[int, dict]], claim: Claim, measure: str) -> tuple[float, float, float, int]:
    """(mean, low, high, seeds) of the per-seed difference in the claim's favour on ``measure``."""
    claimed, other = found.get(claim.claimed, {}), found.get(claim.other, {})
    seeds = sorted(set(claimed) & set(other))
    if not seeds or measure not in claimed[seeds[0]]:
        return float("nan"), float("nan"), float("nan"), 0
    sign = -1 if measure == "fd" else 1
    mean, low, high = seeds_ci([sign * (claimed[s][measure] - other[s][measure]) for s in seeds])
    return mean, low, high, len(seeds)


def verdict(found: dict[str, dict[int, dict]], claim: Claim) -> tuple[str, str]:
    """(reproduced | not reproduced | mixed | not run, why)."""
    held, why = [], []
    for measure in claim.measures:
        mean, low, high, seeds = paired(found, claim, measure)
        if seeds < 2:
            return "not run", f"{seeds} paired seeds"
        bound = -MARGIN if claim.reaches and measure == "good_rate" else 0.0
        held.append(low > bound)
        scale = 100 if measure != "fd" else 1
        state = ("holds" if held[-1] else f"contradicted: interval below {scale * bound:+.0f}" if high < bound
                 else f"inconclusive: interval spans {scale * bound:+.0f}")
        why.append(f"{NAMES[measure]} {scale * mean:+.2f} [{scale * low:+.2f}, {scale * high:+.2f}] {state}")
    name = "reproduced" if all(held) else "not reproduced" if not any(held) else "mixed"
    return name, "; ".join(why)


def newest(root: Path, sweep: str) -> Path | None:
    folders = sorted(p for p in (root / sweep).glob("*") if p.is_dir())
    return folders[-1] if folders else None


def table(root: Path) -> str:
    lines = ["| claim | " + " | ".join(f"{NAMES[m]}, claimed arm's advantage [95% CI]" for m in SHOWN)
             + " | seeds | verdict | why | config |", "|---" * (len(SHOWN) + 5) + "|"]
    for claim in CLAIMS:
        sweep = newest(root, claim.sweep)
        found = arms(sweep) if sweep else {}
        cells = []
        for measure in SHOWN:
            mean, low, high, seeds = paired(found, claim, measure)
            scale = 100 if measure != "fd" else 1
            cells.append("-" if not seeds else f"{scale * mean:+.2f} [{scale * low:+.2f}, {scale * high:+.2f}]")
        name, why = verdict(found, claim)
        lines.append(f"| {claim.text} | " + " | ".join(cells) + f" | {paired(found, claim, 'good_rate')[3]} | {name} | "
                     f"{why} | `experiment=claim_{claim.sweep}` |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python experiments/claims.py <folder of claim sweeps, e.g. multirun/claims>", file=sys.stderr)
        return 2
    print(table(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
