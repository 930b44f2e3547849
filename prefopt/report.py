"""``python -m prefopt.report <multirun dir>``: the side-by-side comparison of a sweep's runs.

Reads every run under the directory (``summary.json``, ``eval/{base,aligned}.json``,
``metrics.jsonl``) and writes ``<dir>/report/``: ``report.md``, ``report.html``, ``report.json`` (the
numbers), ``reward_vs_step.png``, ``samples.png`` and ``pareto.png``. Per objective: the good-hand rate and mean
reward of the aligned model (mean over seeds with a Student-t 95% interval; a single seed shows its
own binomial/normal interval), the gain over the base model, wall time, optimizer steps,
reward-model calls and preference pairs used (0 for unpaired objectives). A second table shows what
the reward does not measure (prefopt/evaluation/beyond_reward.py): the held-out judges and the
objectives whose reward gain outruns them, the distance to held-out renders, diversity and drift;
``pareto.png`` plots the reward against that distance, one point per seed. Clip runs (SynthHands
Animation) get the same columns, with the mean clip reward as the reward, and a table per reward
dimension (every dimension the evaluation lists under ``dimensions``): mean over seeds [t 95%
interval] and the gain over the base model.

A row is an arm of the sweep: the objective plus every override (``.hydra/overrides.yaml``) whose
value differs between the runs, the seed apart (``ipa hand_aware.enabled=false``); the comparison
sweep's arms are its objectives.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import statistics
import sys
from pathlib import Path

from omegaconf import OmegaConf

from prefopt.evaluation import beyond_reward
from prefopt.evaluation.stats import seeds_ci
from prefopt.io import atomic_write, write_text

ORDER = ("base", "sft", "ipa", "dpo", "gapo", "hgdpo")
NOT_AN_ARM = {"seed", "objective", "data.seed", "experiment"}


def _read_json(path: Path, lines: bool = False):
    """A run's JSON file (``lines``: JSON lines), or one line naming it when it does not parse."""
    from prefopt.errors import ConfigError, first_line

    try:
        text = path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line] if lines else json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not valid JSON ({first_line(error)}); remove the run's folder from {path.parents[1]} "
                          "or run it again") from None


def load_runs(root: Path) -> list[dict]:
    """Every finished run under ``root``: its summary, evaluations and logged metrics."""
    runs = []
    for summary_path in sorted(root.rglob("summary.json")):
        run_dir = summary_path.parent
        aligned, base = run_dir / "eval" / "aligned.json", run_dir / "eval" / "base.json"
        if not aligned.is_file() or not base.is_file():
            continue
        runs.append({"dir": run_dir, "summary": _read_json(summary_path), "aligned": _read_json(aligned),
                     "base": _read_json(base), "metrics": _read_json(run_dir / "metrics.jsonl", lines=True)})
    return runs


def label_arms(runs: list[dict]) -> None:
    """Set each run's ``arm``: its objective and the overrides that vary between the runs but the seed."""
    overrides = []
    for run in runs:
        path = run["dir"] / ".hydra" / "overrides.yaml"
        items = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else []
        overrides.append(dict(item.lstrip("+~").split("=", 1) for item in items if "=" in item))
    keys = {key for found in overrides for key in found} - NOT_AN_ARM
    varying = sorted(key for key in keys if len({found.get(key) for found in overrides}) > 1)
    for run, found in zip(runs, overrides, strict=True):
        run["arm"] = " ".join([run["summary"]["objective"], *(f"{key}={found[key]}" for key in varying if key in found)])


def _arm(run: dict) -> str:
    return run.get("arm", run["summary"]["objective"])


def _order(arm: str) -> tuple[int, str]:
    objective = arm.split(" ")[0]
    return (ORDER.index(objective) if objective in ORDER else len(ORDER), arm)


def _interval(values: list[float], single: list[float] | None) -> list[float]:
    _, low, high = seeds_ci(values)
    if len(values) == 1 and single is not None:
        return list(single)
    return [low, high]


def _reward(result: dict) -> tuple[float, list[float]]:
    """The mean reward and its interval (a clip evaluation names them ``reward``)."""
    key = "mean_reward" if "mean_reward" in result else "reward"
    return result[key], result[f"{key}_ci95"]


def summarize(runs: list[dict]) -> dict[str, dict]:
    """Per objective (and ``base``): the report's numbers, recomputed from the runs' files."""
    table: dict[str, dict] = {}
    by_objective: dict[str, list[dict]] = {}
    for run in runs:
        by_objective.setdefault(_arm(run), []).append(run)
    base_runs = [run["base"] for run in runs]
    base_rates = [b["good_rate"] for b in base_runs]
    distinct_bases = list({json.dumps(run["base"], sort_keys=True): run for run in runs}.values())
    table["base"] = {"seeds": len(distinct_bases),
                     "good_rate": statistics.fmean(base_rates), "good_rate_ci95": base_runs[0]["good_rate_ci95"],
                     "mean_reward": statistics.fmean(_reward(b)[0] for b in base_runs),
                     "mean_reward_ci95": _reward(base_runs[0])[1], "gain": 0.0,
                     "quality": beyond_reward.quality_row(distinct_bases, "base")}
    for name in sorted(by_objective, key=_order):
        group = sorted(by_objective[name], key=lambda r: r["summary"]["seed"])
        rates = [r["aligned"]["good_rate"] for r in group]
        rewards = [_reward(r["aligned"])[0] for r in group]
        gains = [r["aligned"]["good_rate"] - r["base"]["good_rate"] for r in group]
        single = group[0]["aligned"] if len(group) == 1 else None
        table[name] = {
            "seeds": len(group), "seed_values": [r["summary"]["seed"] for r in group],
            "good_rate": statistics.fmean(rates),
            "good_rate_ci95": _interval(rates, single and single["good_rate_ci95"]),
            "mean_reward": statistics.fmean(rewards),
            "mean_reward_ci95": _interval(rewards, single and _reward(single)[1]),
            "gain": statistics.fmean(gains),
            "wall_s": statistics.fmean(r["summary"]["wall_s"] for r in group),
            "steps": statistics.fmean(r["summary"]["steps"] for r in group),
            "reward_calls": statistics.fmean(r["summary"]["reward_calls"] for r in group),
            "pairs": statistics.fmean(r["summary"]["pairs"] for r in group),
            "quality": beyond_reward.quality_row(group),
            "dimensions": _dimensions(group),
        }
    table["base"]["dimensions"] = _dimensions(distinct_bases, "base")
    return table


def _dimensions(group: list[dict], which: str = "aligned") -> dict[str, dict]:
    """Per reward dimension the evaluation lists: mean over seeds, its interval, the gain over the base."""
    result = group[0][which]
    rows = {}
    for dim in result.get("dimensions", []):
        values = [r[which][dim] for r in group]
        single = result[f"{dim}_ci95"] if len(group) == 1 else None
        rows[dim] = {"mean": statistics.fmean(values), "ci95": _interval(values, single),
                     "gain": statistics.fmean(r[which][dim] - r["base"][dim] for r in group)}
    return rows


def dimensions_markdown(table: dict[str, dict]) -> str:
    """The per-dimension table (clip runs); empty when the evaluation lists no dimensions."""
    dims = list(table["base"]["dimensions"])
    if not dims:
        return ""
    lines = ["| objective | " + " | ".join(f"{dim} [95% CI] (gain)" for dim in dims) + " |", "|---" * (len(dims) + 1) + "|"]
    for name, row in table.items():
        cells = [f"{c['mean']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}] ({c['gain']:+.3f})"
                 for c in (row["dimensions"][dim] for dim in dims)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reward_curves(runs: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """Per objective: (step, good-hand rate) of the policy's scored pool at each round's start and
    of the final evaluation, averaged over seeds."""
    points: dict[str, dict[int, list[float]]] = {}
    for run in runs:
        curve = points.setdefault(_arm(run), {})
        for row in run["metrics"]:
            if "pool/good_rate" in row:
                curve.setdefault(row["step"], []).append(row["pool/good_rate"])
        curve.setdefault(run["summary"]["steps"], []).append(run["aligned"]["good_rate"])
    return {name: [(step, statistics.fmean(v)) for step, v in sorted(curve.items())] for name, curve in points.items()}


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


def markdown_table(table: dict[str, dict], video: bool = False) -> str:
    good = "good-clip rate" if video else "good-hand rate"
    lines = [f"| objective | seeds | {good} % [95% CI] | mean reward [95% CI] | gain vs base (points) "
             "| wall time (s) | steps | reward-model calls | pairs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in table.items():
        low, high = row["good_rate_ci95"]
        r_low, r_high = row["mean_reward_ci95"]
        extra = ("", "", "", "") if name == "base" else (
            f"{row['wall_s']:.0f}", f"{row['steps']:.0f}", f"{row['reward_calls']:.0f}", f"{row['pairs']:.0f}")
        lines.append(f"| {name} | {row['seeds']} | {_percent(row['good_rate'])} [{_percent(low)}, {_percent(high)}] "
                     f"| {row['mean_reward']:.3f} [{r_low:.3f}, {r_high:.3f}] | {100 * row['gain']:+.1f} | "
                     + " | ".join(extra) + " |")
    return "\n".join(lines)


def plot_curves(curves: dict, base_rate: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    for name, points in curves.items():
        steps, rates = zip(*points, strict=True)
        axis.plot(steps, [100 * r for r in rates], marker="o", label=name)
    axis.axhline(100 * base_rate, color="grey", linestyle="--", label="base (evaluation)")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("good-hand rate (%)")
    axis.set_title("Reward vs step: round pools, then the final evaluation")
    axis.legend(fontsize=8)
    figure.tight_layout()
    atomic_write(path, figure.savefig)
    plt.close(figure)


def plot_samples(runs: list[dict], path: Path) -> list[str]:
    """Base and each objective's first-seed evaluation grid side by side; returns the titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    panels: dict[str, Path] = {}
    for run in sorted(runs, key=lambda r: r["summary"]["seed"]):
        panels.setdefault("base", run["dir"] / "eval" / "base.png")
        panels.setdefault(_arm(run), run["dir"] / "eval" / "aligned.png")
    panels = {k: v for k, v in sorted(panels.items(), key=lambda kv: _order(kv[0])) if v.is_file()}
    if not panels:
        return []
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4), dpi=110, squeeze=False)
    for axis, (name, image) in zip(axes[0], panels.items(), strict=True):
        with Image.open(image) as grid:
            width, height = grid.size
            axis.imshow(grid.crop((0, 0, width // 2, min(height, width // 2))))  # the first 8 x 8 samples
        axis.set_title(name)
        axis.axis("off")
    figure.suptitle("The first evaluation samples (same seeds; green frame: good hand)")
    figure.tight_layout()
    atomic_write(path, figure.savefig)
    plt.close(figure)
    return list(panels)


def write_report(root: Path) -> Path:
    runs = load_runs(root)
    if not runs:
        raise SystemExit(f"prefopt.report: {root}: no finished runs (summary.json with eval/) found")
    out = root / "report"
    out.mkdir(exist_ok=True)
    label_arms(runs)
    table = summarize(runs)
    curves = reward_curves(runs)
    plot_curves(curves, table["base"]["good_rate"], out / "reward_vs_step.png")
    samples = plot_samples(runs, out / "samples.png")
    video = "frames" in runs[0]["aligned"]
    pareto = beyond_reward.pareto_points(runs)
    if pareto:
        beyond_reward.plot_pareto(pareto, video, out / "pareto.png")
    write_text(out / "report.json", json.dumps({"runs": [str(r["dir"]) for r in runs], "table": table,
                                                 "reward_vs_step": curves, "pareto": pareto}, indent=1))
    evaluated = runs[0]["aligned"].get("num_samples", "the")
    intro = (f"{len(runs)} runs from `{root}`. Good-{'clip' if video else 'hand'} rate and mean reward of the aligned model on the "
             f"same {evaluated} evaluation seeds as the base model; over seeds: mean and Student-t 95% interval "
             "(one seed: the run's own binomial/normal interval).")
    rows_md = markdown_table(table, video)
    beyond_md = beyond_reward.markdown(table, video)
    dims_md = dimensions_markdown(table)
    per_dim = ["## Per reward dimension", DIMENSIONS_INTRO, dims_md] if dims_md else []
    markdown = "\n\n".join(["# prefopt comparison", intro, rows_md, *per_dim, "## Beyond the reward", BEYOND_INTRO, beyond_md,
                            *(["![reward against FD](pareto.png)"] if pareto else []),
                            "![reward vs step](reward_vs_step.png)", *(["![samples](samples.png)"] if samples else [])]) + "\n"
    write_text(out / "report.md", markdown)
    write_text(out / "report.html",
        "<!doctype html><html><head><meta charset='utf-8'><title>prefopt comparison</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>"
        f"<h1>prefopt comparison</h1><p>{html.escape(intro)}</p>{_html_table(rows_md)}"
        + (f"<h2>Per reward dimension</h2><p>{html.escape(DIMENSIONS_INTRO)}</p>{_html_table(dims_md)}" if dims_md else "")
        + f"<h2>Beyond the reward</h2><p>{html.escape(BEYOND_INTRO)}</p>{_html_table(beyond_md)}"
        + ("<img src='pareto.png'>" if pareto else "")
        + "<h2>Reward vs step</h2><img src='reward_vs_step.png'>"
        + ("<h2>Samples</h2><img src='samples.png' width='100%'>" if samples else "") + "</body></html>\n")
    return out


DIMENSIONS_INTRO = ("Each dimension of the clip reward (prefopt/tasks/synthhands_anim/reward.py), in [0, 1]: mean over "
                    "seeds [Student-t 95% interval], and in brackets the mean gain over the base model.")
BEYOND_INTRO = ("What the training reward does not measure, over the same seeds (mean [Student-t 95% interval]; one "
                "seed: the run's own interval). Judges: the template check and the feature network's classifier, "
                "never optimized. FD: Fréchet distance to held-out renders of good hands in the feature network's "
                "space (two render sets: about 0.2). Diversity: mean pairwise feature distance; coverage: the share "
                "of the renders' pose and colour the samples reach. Drift: denoising error on renders minus the "
                "base model's. Last column: the relative gain of the reward minus a judge's, mean ± sd over seeds; "
                "FLAG where the mean exceeds the sd (the reward rose more than the judge says the hands did).")


def _html_table(rows_md: str) -> str:
    """A Markdown table as an HTML table."""
    lines = rows_md.splitlines()
    header = "".join(f"<th>{html.escape(c.strip())}</th>" for c in lines[0].strip("|").split("|"))
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip("|").split("|")) + "</tr>"
                   for line in lines[2:])
    return f"<table><tr>{header}</tr>{rows}</table>"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m prefopt.report", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a multirun directory (or any folder of prefopt runs)")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        sys.stderr.write(f"prefopt.report: {args.directory}: no such directory\n")
        sys.exit(2)
    from prefopt.cli import one_line_errors

    with one_line_errors(str(args.directory / "report")):
        out = write_report(args.directory)
    print((out / "report.md").read_text().split("\n\n")[2])
    print(f"report: {out / 'report.md'} ({out / 'report.html'})")


if __name__ == "__main__":
    main()
