"""A real model against its base, as Diffusion-DPO reports it: sample the base pipeline and the
pipeline with the run's LoRA on the SAME prompts and seeds, score both with every judge, and report
per judge the mean (95% interval over samples) and the win rate of aligned over base:

    win = mean_i ( 1[s_aligned,i > s_base,i] + 1/2 1[s_aligned,i = s_base,i] )

with its 95% interval (normal approximation over the paired samples), plus a grid of the pairs.

    python -m prefopt.evaluate model=sd3 model.path=<pipeline> adapter=<run>/final prompts=<prompts.txt> \\
        'judges=[pickscore,hpsv2]' judge_paths.pickscore=<folder> judge_paths.hpsv2=<folder>

Sampling is ``prefopt.generate`` (resumable, sharded under ``accelerate launch``) into ``<out>/base``
and ``<out>/aligned``; scores are kept per set and judge in ``<out>/scores/<set>-<judge>.json`` (a
rerun scores only what is missing). Judges score the raw, published value (``Judge.raw``: PickScore's 100 cos, ...);
a reward without ``raw`` scores its [0, 1] value. Videos: the frame-wise judges average the frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from prefopt.errors import ConfigError

GRID_PAIRS = 8


def judge(name: str, paths: dict, build: bool = True):
    """The reward ``conf/reward/<name>.yaml`` with its folder from ``judge_paths.<name>``; ``build=False``:
    only check that it names a config and, if it needs one, a folder (before sampling, on every process)."""
    from omegaconf import OmegaConf

    from prefopt.paths import CONF_DIR
    from prefopt.rewards.callables import load

    file = Path(CONF_DIR) / "reward" / f"{name}.yaml"
    if not file.is_file():
        known = sorted(p.stem for p in (Path(CONF_DIR) / "reward").glob("*.yaml"))
        raise ConfigError(f"judges: no reward named {name!r} in conf/reward/ (known: {known})")
    config = OmegaConf.load(file)
    if "path" in config.keys():  # "in" is False for a missing value (path: ???)
        if not paths.get(name):
            raise ConfigError(f"judge_paths.{name}: the {name} judge needs its local weight folder "
                              f"(judge_paths.{name}=<folder>)")
        if not Path(str(paths[name])).expanduser().is_dir():
            raise ConfigError(f"judge_paths.{name}: {paths[name]} is not a folder")
        config.path = str(paths[name])
    return load(config, f"judge_paths.{name}") if build else None


def _samples(manifest: Path) -> tuple[list[dict], list[Path]]:
    from prefopt.data.manifest import read_rows

    rows = read_rows(manifest, "samples")
    return rows, [manifest.parent / row["path"] for row in rows]


def scores(scorer, manifest: Path, cache: Path, batch_size: int = 4) -> list[float]:
    """Each sample's score under ``scorer``, kept in ``cache`` (only missing samples are scored): a
    judge's ``raw`` value, else the reward's (a multi-dimensional reward's ``score``). One pipeline's
    samples share a shape; ``batch_size`` samples (a clip counts once) are in memory at a time."""
    from prefopt.io import write_json
    from prefopt.rewards.callables import check
    from prefopt.score import load_sample

    rows, files = _samples(manifest)
    done = json.loads(cache.read_text()) if cache.is_file() else {}
    todo = [i for i, row in enumerate(rows) if row["path"] not in done]
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        samples, prompts = torch.stack([load_sample(files[i]) for i in batch]), [rows[i]["prompt"] for i in batch]
        if hasattr(scorer, "raw"):
            values = scorer.raw(samples, prompts)
        else:
            values = scorer(samples, prompts)
            values = check(values["score"] if isinstance(values, dict) else values, len(batch), str(cache.stem))
        done.update({rows[i]["path"]: float(v) for i, v in zip(batch, values, strict=True)})
        write_json(cache, done)
    return [done[row["path"]] for row in rows]


def win_rate(aligned: torch.Tensor, base: torch.Tensor) -> tuple[float, float, float]:
    """(win rate, low, high) of aligned over base on paired samples; a tie counts one half."""
    from prefopt.evaluation.stats import mean_ci

    outcome = (aligned > base).float() + 0.5 * (aligned == base).float()
    return mean_ci(outcome)


def summarize(table: dict[str, dict[str, list[float]]]) -> dict:
    """``{judge: {"base": scores, "aligned": scores}}`` -> per judge both means and the win rate."""
    from prefopt.evaluation.stats import mean_ci

    result = {}
    for name, both in table.items():
        base, aligned = torch.tensor(both["base"]), torch.tensor(both["aligned"])
        result[name] = {"base": mean_ci(base), "aligned": mean_ci(aligned), "win_rate": win_rate(aligned, base),
                        "n": len(base)}
    return result


def markdown(result: dict) -> str:
    lines = ["| judge | base mean [95% CI] | aligned mean [95% CI] | win rate of aligned over base % [95% CI] | pairs |",
             "|---|---|---|---|---|"]
    for name, row in result.items():
        b, a, w = row["base"], row["aligned"], row["win_rate"]
        lines.append(f"| {name} | {b[0]:.4g} [{b[1]:.4g}, {b[2]:.4g}] | {a[0]:.4g} [{a[1]:.4g}, {a[2]:.4g}] | "
                     f"{100 * w[0]:.1f} [{100 * w[1]:.1f}, {100 * w[2]:.1f}] | {row['n']} |")
    return "\n".join(lines)


def pair_grid(base: Path, aligned: Path, path: Path, pairs: int = GRID_PAIRS) -> None:
    """Rows of (base, aligned) for the first ``pairs`` samples (a clip: its middle frame)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prefopt.score import load_sample

    (rows, base_files), (_, aligned_files) = _samples(base), _samples(aligned)
    count = min(pairs, len(rows))
    figure, axes = plt.subplots(count, 2, figsize=(4, 2 * count), squeeze=False)
    for i in range(count):
        for column, (file, title) in enumerate(((base_files[i], "base"), (aligned_files[i], "aligned"))):
            sample = load_sample(file)
            sample = sample[:, sample.shape[1] // 2] if sample.dim() == 4 else sample
            axes[i, column].imshow(((sample.permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy())
            axes[i, column].set_axis_off()
            axes[i, column].set_title(f"{title}: {rows[i]['prompt'][:24]}" if i == 0 or column == 0 else title, fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
