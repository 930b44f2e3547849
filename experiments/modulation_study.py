"""The temporal motion modulation study of SynthHands Animation (issues 5 and 27).

    bash experiments/modulation_study.sh          # 3 arms x seeds 0, 1, 2 of python -m prefopt.pretrain
    python experiments/modulation_study.py multirun/modulation/<time>

Reads every pretraining run under the folder (``.hydra/config.yaml`` and ``eval/pretrained.json``)
and prints Markdown tables: per arm (no module; the module on the motion; on the motion and the
audio-rate condition), each seed's synchrony and motion alignment (its own 95% interval) and the
mean over seeds with a Student-t 95% interval; then every reward dimension; then the differences
between arms with intervals over the paired seeds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from prefopt.evaluation.stats import seeds_ci

ARMS = ("none", "motion", "motion+audio")
MAIN = ("synchrony", "motion")
DIMS = ("synchrony", "motion", "appearance", "consistency", "faithfulness", "reward", "good_rate")
CONTRASTS = (("motion", "none", "motion"), ("motion+audio", "motion", "synchrony"), ("motion+audio", "none", "motion"),
             ("motion+audio", "none", "synchrony"))


def arm(cfg) -> str:
    if not cfg.modulation.enabled:
        return "none"
    return "motion+audio" if cfg.modulation.get("audio", False) else "motion"


def runs(sweep: Path) -> dict[str, dict[int, dict]]:
    """{arm: {seed: evaluation}}."""
    found: dict[str, dict[int, dict]] = {name: {} for name in ARMS}
    for result in sorted(sweep.rglob("eval/pretrained.json")):
        cfg = OmegaConf.load(result.parent.parent / ".hydra" / "config.yaml")
        found[arm(cfg)][int(cfg.seed)] = json.loads(result.read_text())
    return found


def _ci(values: list[float]) -> str:
    mean, low, high = seeds_ci(values)
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def table(found: dict[str, dict[int, dict]]) -> str:
    seeds = sorted({seed for arm_runs in found.values() for seed in arm_runs})
    arms = [name for name in ARMS if found[name]]
    lines = []
    for dim in MAIN:
        lines += ["| arm | " + " | ".join(f"seed {s}: {dim} [95% CI]" for s in seeds) + " | mean over seeds [t 95% CI] |",
                  "|---" * (len(seeds) + 2) + "|"]
        for name in arms:
            cells = ["-" if (r := found[name].get(s)) is None else
                     f"{r[dim]:.3f} [{r[dim + '_ci95'][0]:.3f}, {r[dim + '_ci95'][1]:.3f}]" for s in seeds]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {_ci([r[dim] for r in found[name].values()])} |")
        lines.append("")
    lines += ["| arm | " + " | ".join(DIMS) + " |", "|---" * (len(DIMS) + 1) + "|"]
    for name in arms:
        lines.append(f"| {name} | " + " | ".join(_ci([r[dim] for r in found[name].values()]) for dim in DIMS) + " |")
    lines += ["", "| contrast | measure | per seed | mean difference [t 95% CI] |", "|---|---|---|---|"]
    for high, low, dim in CONTRASTS:
        paired = sorted(set(found[high]) & set(found[low]))
        if not paired:
            continue
        differences = [found[high][s][dim] - found[low][s][dim] for s in paired]
        lines.append(f"| {high} minus {low} | {dim} | " + ", ".join(f"{d:+.3f}" for d in differences)
                     + f" | {_ci(differences)} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python experiments/modulation_study.py <study folder>", file=sys.stderr)
        return 2
    found = runs(Path(argv[0]))
    if sum(bool(arm_runs) for arm_runs in found.values()) < 2:
        print(f"{argv[0]}: needs runs of two arms or more (found " + ", ".join(f"{k}: {len(v)}" for k, v in found.items())
              + ")", file=sys.stderr)
        return 2
    print(table(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
