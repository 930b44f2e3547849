"""The report's second table and its Pareto plot: per objective what the training reward does not
measure, read from the evaluations' JSON (the keys an evaluator wrote; a column none wrote is left out).

    judges     independent_rate (the template check), classifier_rate (the feature network):
               held-out judges, never optimized
    fd         Fréchet distance to held-out renders (fd_temporal: of the clips' motion)
    diversity  mean pairwise feature distance; coverage of the renders' pose and colour
    drift      the trained model's denoising error on renders minus the base model's (same draws)

Each column: the mean over seeds with a Student-t 95% interval; one seed shows the run's own interval
(the bootstrap's for FD, Wilson's for a rate) where its evaluation has one.

The flag (reward hacking): per seed s, the relative gains over the base model
g(s) = aligned(s) / base(s) - 1 of the training reward (the strict good-hand rate; for clips the mean
clip reward) and of a judge, and their difference d(s) = g_reward(s) - g_judge(s). An objective is
flagged for that judge when the mean of d over seeds exceeds its sample standard deviation over
seeds (the seeds' spread); with one seed there is no spread and no flag. Relative, not absolute,
gains: a judge that passes a fixed share of the reward's good hands (the template check passes
about half) then shows the same relative gain, so only a reward that rises without the judge flags.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from prefopt.evaluation.stats import seeds_ci

COLUMNS = (  # (key in an evaluation's JSON, header, scale, decimals shown)
    ("independent_rate", "judge: template check %", 100, 1),
    ("classifier_rate", "judge: feature classifier %", 100, 1),
    ("fd", "FD to renders", 1, 2),
    ("fd_temporal", "temporal FD", 1, 2),
    ("diversity", "diversity", 1, 2),
    ("coverage", "coverage %", 100, 1),
    ("drift", "drift (denoising error vs base)", 1, 4),
)
JUDGES = {"independent_rate": "template", "classifier_rate": "classifier"}


def training_reward(result: dict) -> str:
    """The key of what the objectives were trained to raise: the clip reward for clips, else the strict good-hand rate."""
    return "reward" if "frames" in result else "good_rate"


def _value(run: dict, key: str, which: str) -> float | None:
    if key == "drift":
        if "render_error" not in run[which]:
            return None
        return run[which]["render_error"] - run["base"]["render_error"]
    return run[which].get(key)


def relative_gain(value: float, base: float) -> float:
    return value / base - 1 if base > 0 else math.nan


def reward_minus_judge(group: list[dict], judge: str) -> dict:
    """The flag rule (module docstring) for one objective's runs and one judge."""
    reward = training_reward(group[0]["aligned"])
    differences = [relative_gain(r["aligned"][reward], r["base"][reward]) - relative_gain(r["aligned"][judge], r["base"][judge])
                   for r in group]
    mean = statistics.fmean(differences)
    spread = statistics.stdev(differences) if len(differences) > 1 else math.nan
    return {"difference": mean, "spread": spread, "flagged": bool(mean > spread)}


def quality_row(group: list[dict], which: str = "aligned") -> dict:
    """The second table's numbers for ``group`` (one objective's runs, or the base model's with ``which="base"``)."""
    row: dict = {}
    for key, *_ in COLUMNS:
        values = [_value(run, key, which) for run in group]
        if any(v is None for v in values):
            continue
        mean, low, high = seeds_ci(values)
        if len(values) == 1:
            low, high = group[0][which].get(f"{key}_ci95", [math.nan, math.nan]) if key != "drift" else (math.nan, math.nan)
        row[key], row[f"{key}_ci95"] = mean, [low, high]
    if which == "aligned":
        row["reward_minus_judge"] = {judge: reward_minus_judge(group, judge) for judge in JUDGES
                                     if all(judge in r["aligned"] and judge in r["base"] for r in group)}
    return row


def _cell(row: dict, key: str, scale: float, digits: int) -> str:
    if key not in row:
        return ""
    low, high = row[f"{key}_ci95"]
    interval = "" if math.isnan(low) else f" [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"
    return f"{scale * row[key]:.{digits}f}{interval}"


def _flags(row: dict) -> str:
    cells = []
    for judge, found in row.get("reward_minus_judge", {}).items():
        spread = "" if math.isnan(found["spread"]) else f" ± {100 * found['spread']:.0f}"
        cells.append(f"{JUDGES[judge]} {100 * found['difference']:+.0f}{spread}{' FLAG' if found['flagged'] else ''}")
    return "; ".join(cells)


def markdown(table: dict[str, dict], video: bool) -> str:
    """The second table (rows: the report's table rows, each carrying its ``quality`` numbers)."""
    shown = [column for column in COLUMNS if any(column[0] in row.get("quality", {}) for row in table.values())]
    reward = "reward: mean clip reward" if video else "reward: good-hand rate %"
    lines = ["| objective | " + " | ".join([reward, *(header for _, header, _, _ in shown)])
             + " | reward gain - judge gain, % of base (mean ± sd over seeds) |",
             "|---" * (len(shown) + 3) + "|"]
    for name, row in table.items():
        reward_cell = _cell(row, "mean_reward", 1, 3) if video else _cell(row, "good_rate", 100, 1)
        cells = [reward_cell, *(_cell(row.get("quality", {}), key, scale, digits) for key, _, scale, digits in shown)]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_flags(row.get('quality', {}))} |")
    return "\n".join(lines)


def pareto_points(runs: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Per objective (and ``base``): (FD, training reward) of each run; the base model once per distinct evaluation."""
    points: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        if "fd" not in run["aligned"]:
            continue
        reward = training_reward(run["aligned"])
        base = (run["base"]["fd"], run["base"][reward])
        if base not in points.setdefault("base", []):
            points["base"].append(base)
        points.setdefault(run.get("arm", run["summary"]["objective"]), []).append((run["aligned"]["fd"], run["aligned"][reward]))
    return points


def plot_pareto(points: dict[str, list[tuple[float, float]]], video: bool, path: Path) -> None:
    """Training reward against FD, one point per seed; the dashed line joins the runs no other run beats on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prefopt.io import atomic_write

    scale = 1 if video else 100
    figure, axis = plt.subplots(figsize=(6, 4.5), dpi=120)
    for name, xy in points.items():
        fds, rewards = zip(*xy, strict=True)
        style = {"marker": "*", "s": 160, "color": "black"} if name == "base" else {"marker": "o", "s": 40}
        axis.scatter(fds, [scale * r for r in rewards], label=name, **style)
    every = sorted((fd, scale * r) for xy in points.values() for fd, r in xy)
    front = [p for i, p in enumerate(every) if all(q[1] < p[1] for q in every[:i])]
    axis.plot(*zip(*front, strict=True), color="grey", linestyle="--", linewidth=1, label="Pareto front")
    axis.set_xlabel("FD to held-out renders (lower is closer)")
    axis.set_ylabel("mean clip reward" if video else "good-hand rate (%)")
    axis.set_title("Reward against distance to the renders, one point per seed")
    axis.legend(fontsize=8)
    figure.tight_layout()
    atomic_write(path, figure.savefig)
    plt.close(figure)
