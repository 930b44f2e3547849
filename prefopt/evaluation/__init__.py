"""Evaluators, chosen by config (``conf/eval/``: none, synthhands, synthhands_anim): the same code
runs after training and in ``python -m prefopt.evaluate``. The loop knows no benchmark: it asks
``eval.evaluator`` (a class path) for an object with

    evaluate(denoiser, scheduler, name, out_dir) -> dict   one model, written to <out_dir>/<name>.json
    describe(result) -> str                                one line for people
    table(denoiser, scheduler) -> list[dict]               rows for a wandb table (``image`` in [-1, 1])

and scores the base model and the trained one on the same seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefopt.errors import ConfigError
from prefopt.evaluation.stats import mean_ci, proportion_ci
from prefopt.io import write_json
from prefopt.paths import cache_root


def build_evaluator(eval_cfg):
    """The evaluator ``eval_cfg.evaluator`` names, built with the config's numbers and options; None
    when evaluation is off (``eval=none`` or ``eval.num_samples=0``)."""
    if not eval_cfg.evaluator or not eval_cfg.num_samples:
        return None
    from hydra.utils import get_class

    try:
        cls = get_class(eval_cfg.evaluator)
    except Exception as error:  # noqa: BLE001 - an unknown class path is a config error
        raise ConfigError(f"eval.evaluator: cannot import {eval_cfg.evaluator!r} ({error})") from None
    return cls(num_samples=eval_cfg.num_samples, seed=eval_cfg.seed, steps=eval_cfg.steps, **eval_cfg.options)


def against_base(evaluator, base, policy, out_dir: Path) -> dict[str, dict]:
    """``base`` (a ModelBundle) and the trained ``policy`` scored on the same seeds."""
    return {"base": evaluator.evaluate(base.denoiser, base.scheduler, "base", out_dir),
            "aligned": evaluator.evaluate(policy, base.scheduler, "aligned", out_dir)}


def cached(key: str, compute) -> tuple[dict, tuple | None]:
    """Evaluation numbers cached under ``key`` on this machine, or ``compute()`` -> (numbers,
    (samples, good)), the numbers then cached; the samples are None when the numbers came from the cache."""
    path = cache_root() / "eval" / f"{key}.json"
    if path.is_file():
        return json.loads(path.read_text()), None
    result, samples = compute()
    write_json(path, result)
    return result, samples


def write_result(out_dir: Path, name: str, result: dict) -> None:
    write_json(Path(out_dir) / f"{name}.json", result)


__all__ = ["against_base", "build_evaluator", "cached", "mean_ci", "proportion_ci", "write_result"]
