"""The with/without temporal-motion-modulation study of SynthHands Animation (issue 5).

    python -m prefopt.pretrain -m model=tiny_video data=anim_mix modulation.enabled=true,false seed=0,1,2 \
        'model.seed=${seed}' trainer.max_steps=700 trainer.batch_size=32 hydra.sweep.dir=multirun/modulation
    python experiments/modulation_study.py multirun/modulation

Reads every pretraining run of the sweep (``.hydra/config.yaml`` and ``eval/pretrained.json``) and prints
a Markdown table: per arm, each seed's motion alignment (512 clips, its own 95% interval) and the mean
over seeds with a Student-t 95% interval; then the same for the other reward dimensions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from prefopt.report import seeds_ci

DIMS = ("motion", "appearance", "consistency", "reward", "good_rate")


def runs(sweep: Path) -> dict[bool, dict[int, dict]]:
    """{modulation enabled: {seed: evaluation}}."""
    found: dict[bool, dict[int, dict]] = {True: {}, False: {}}
    for result in sorted(sweep.glob("*/eval/pretrained.json")):
        cfg = OmegaConf.load(result.parent.parent / ".hydra" / "config.yaml")
        found[bool(cfg.modulation.enabled)][int(cfg.seed)] = json.loads(result.read_text())
    return found


def table(found: dict[bool, dict[int, dict]]) -> str:
    seeds = sorted(set(found[True]) | set(found[False]))
    lines = ["| modulation | " + " | ".join(f"seed {s}: motion [95% CI]" for s in seeds)
             + " | mean over seeds [t 95% CI] |", "|---" * (len(seeds) + 2) + "|"]
    for arm in (True, False):
        cells = []
        for seed in seeds:
            r = found[arm].get(seed)
            cells.append("-" if r is None else f"{r['motion']:.3f} [{r['motion_ci95'][0]:.3f}, {r['motion_ci95'][1]:.3f}]")
        mean, low, high = seeds_ci([r["motion"] for r in found[arm].values()])
        lines.append(f"| {'with' if arm else 'without'} | " + " | ".join(cells) + f" | {mean:.3f} [{low:.3f}, {high:.3f}] |")
    lines += ["", "| modulation | " + " | ".join(DIMS) + " |", "|---" * (len(DIMS) + 1) + "|"]
    for arm in (True, False):
        cells = []
        for dim in DIMS:
            mean, low, high = seeds_ci([r[dim] for r in found[arm].values()])
            cells.append(f"{mean:.3f} [{low:.3f}, {high:.3f}]")
        lines.append(f"| {'with' if arm else 'without'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python experiments/modulation_study.py <pretrain sweep dir>", file=sys.stderr)
        return 2
    found = runs(Path(argv[0]))
    if not found[True] or not found[False]:
        print(f"{argv[0]}: needs runs with modulation.enabled=true and =false (found "
              f"{len(found[True])} and {len(found[False])})", file=sys.stderr)
        return 2
    print(table(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
