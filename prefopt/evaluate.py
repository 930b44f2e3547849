"""SynthHands evaluation: ``python -m prefopt.evaluate run=<run dir>`` or ``... model=base``.

``num_samples`` samples (default 512) from fixed seeds, scored by the strict good-hand test and the
graded reward (:mod:`prefopt.rewards.hands`): the good-hand rate with a Wilson 95% interval, the
mean reward with a normal 95% interval, the independent check's rate, the finger-count
histogram and the hand-quality score (the share of samples with five detected fingers), plus the
model's denoising error on fresh renders of good hands inside and outside the hand (fixed noise
and timesteps: what hand-aware weighting aims at). Writes ``eval/<name>.json`` and a PNG grid of the first samples (a green frame marks a
good hand) into the run dir (or ``outputs/evaluate/<model>``). Results are cached by the model's
weights, seed, count and sampling steps, so the base model is sampled once per machine.
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from prefopt.errors import ConfigError
from prefopt.synth.render import GOOD_FINGERS

EVAL_SEED = 10_000  # sample seeds, disjoint from the training pools' (data.seed)
Z95 = 1.959963984540054
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def proportion_ci(successes: int, n: int, z: float = Z95) -> tuple[float, float, float]:
    """(rate, low, high): the Wilson score interval of a binomial proportion."""
    if n <= 0:
        raise ValueError("proportion_ci needs n > 0")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, centre - half, centre + half


def mean_ci(values: torch.Tensor, z: float = Z95) -> tuple[float, float, float]:
    """(mean, low, high): mean +- z * sample standard deviation / sqrt(n)."""
    values = values.double()
    mean = float(values.mean())
    half = z * float(values.std(unbiased=True)) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, mean - half, mean + half


def summarize(scores, independent: torch.Tensor) -> dict:
    n = len(scores.good)
    rate, low, high = proportion_ci(int(scores.good.sum()), n)
    reward, r_low, r_high = mean_ci(scores.reward)
    fingers = torch.bincount(scores.detection.fingers.clamp(max=9), minlength=10)
    return {"num_samples": n, "good_rate": rate, "good_rate_ci95": [low, high],
            "mean_reward": reward, "mean_reward_ci95": [r_low, r_high],
            "independent_rate": float(independent.float().mean()),
            "agreement": float((independent == scores.good).float().mean()),
            "hand_quality": float((scores.detection.fingers == GOOD_FINGERS).float().mean()),
            "fingers_histogram": {str(k): int(c) for k, c in enumerate(fingers.tolist()) if c}}


def hand_errors(denoiser, scheduler, num_samples: int = 512, seed: int = EVAL_SEED) -> dict:
    """Mean per-pixel denoising error of ``denoiser`` on ``num_samples`` renders of good hands, inside
    and outside their masks (one noise and uniform timestep per render, drawn from ``seed``)."""
    from prefopt.core import NoiseProcess, preference_errors
    from prefopt.synth.render import render, sample_specs

    generator = torch.Generator().manual_seed(seed)
    size = denoiser.config.sample_size
    images, masks = render(sample_specs(num_samples, size, generator=generator), size)
    was_training = denoiser.training
    denoiser.eval()
    with torch.no_grad():
        errors = preference_errors(denoiser, None, NoiseProcess(scheduler), images, region=masks, generator=generator)
    denoiser.train(was_training)
    inside, outside = errors.region_err
    return {"err_in_hand": float(inside.mean()), "err_out_hand": float(outside.mean())}


def save_grid(samples: torch.Tensor, good: torch.Tensor, path: Path, columns: int = 16, scale: int = 4) -> None:
    """A PNG of ``samples`` (N, 3, H, W) in [-1, 1], each upscaled and framed green (good) or red."""
    from PIL import Image

    n, _, h, w = samples.shape
    rows = math.ceil(n / columns)
    cell_h, cell_w = h * scale + 2, w * scale + 2
    canvas = torch.zeros(3, rows * cell_h, columns * cell_w)
    frame = {True: torch.tensor([0.1, 0.8, 0.1]), False: torch.tensor([0.8, 0.1, 0.1])}
    for i in range(n):
        r, c = divmod(i, columns)
        tile = ((samples[i].float() + 1) / 2).repeat_interleave(scale, 1).repeat_interleave(scale, 2)
        y, x = r * cell_h, c * cell_w
        canvas[:, y:y + cell_h, x:x + cell_w] = frame[bool(good[i])].view(3, 1, 1)
        canvas[:, y + 1:y + cell_h - 1, x + 1:x + cell_w - 1] = tile
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((canvas.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()).save(path)


def _cached(key: str, compute) -> tuple[dict, tuple | None]:
    """The evaluation numbers cached under ``key`` on this machine, or ``compute()`` -> (numbers,
    (samples, good)), the numbers then cached; the samples are None when the numbers came from the cache."""
    from prefopt.data.synth import cache_root

    cached = cache_root() / "eval" / f"{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text()), None
    result, samples = compute()
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result, indent=1))
    return result, samples


def _write(out_dir: Path, name: str, result: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1))


def evaluate_model(denoiser, scheduler, name: str, out_dir: Path | None = None, num_samples: int = 512,
                   seed: int = EVAL_SEED, steps: int = 30, grid: int = 128) -> dict:
    """Sample, score and summarize one model; write ``<out_dir>/<name>.json`` and ``.png``."""
    from prefopt.rewards.check import independent_good
    from prefopt.rewards.hands import score
    from prefopt.sampling import generate, model_fingerprint

    def compute():
        samples = generate(denoiser, scheduler, num_samples, seed=seed, steps=steps)
        scores = score(samples)
        return ({"seed": seed, "steps": steps, **summarize(scores, independent_good(samples)),
                 **hand_errors(denoiser, scheduler, num_samples, seed)}, (samples, scores.good))

    result, sampled = _cached(f"{model_fingerprint(denoiser)}-n{num_samples}-seed{seed}-steps{steps}-v2", compute)
    result = {"model": name, **result}
    if out_dir is not None:
        _write(out_dir, name, result)
        if grid:
            if sampled is None:  # cached numbers: sample (and score) only the grid's images
                samples = generate(denoiser, scheduler, min(grid, num_samples), seed=seed, steps=steps)
                sampled = samples, score(samples).good
            save_grid(sampled[0][:grid], sampled[1][:grid], out_dir / f"{name}.png")
    return result


ANIMATION_DIMS = ("appearance", "consistency", "motion", "reward")


def evaluate_clips(denoiser, scheduler, name: str, out_dir: Path | None = None, num_samples: int = 512,
                   seed: int = EVAL_SEED, steps: int = 30, frames: int = 4, size: int = 16) -> dict:
    """SynthHands Animation: ``num_samples`` clips, each under its own driving motion (drawn from
    ``seed``), scored per dimension (prefopt/rewards/animation.py); mean and 95% interval of each,
    the good-clip rate with a Wilson interval; ``<out_dir>/<name>.json`` and a PNG of 16 clips."""
    from prefopt.rewards.animation import score_clips
    from prefopt.sampling import generate, model_fingerprint
    from prefopt.synth.animate import driving_angles, motion_condition

    cond = motion_condition(driving_angles(num_samples, frames, torch.Generator().manual_seed(seed)), size)

    def sample(count: int):
        clips = generate(denoiser, scheduler, count, seed=seed, steps=steps, sample_shape=(3, frames, size, size),
                         cond={"motion": cond[:count]})
        return clips, score_clips(clips, cond[:count])

    def compute():
        clips, scores = sample(num_samples)
        rate, low, high = proportion_ci(int(scores.good.sum()), num_samples)
        result = {"seed": seed, "steps": steps, "frames": frames, "num_samples": num_samples,
                  "good_rate": rate, "good_rate_ci95": [low, high]}
        for dim in ANIMATION_DIMS:
            mean, low, high = mean_ci(getattr(scores, dim))
            result.update({dim: mean, f"{dim}_ci95": [low, high]})
        return result, (clips, scores.good)

    result, sampled = _cached(f"{model_fingerprint(denoiser)}-anim-n{num_samples}-seed{seed}-steps{steps}-T{frames}",
                              compute)
    result = {"model": name, **result}
    if out_dir is not None:
        _write(out_dir, name, result)
        shown = min(16, num_samples)
        if sampled is None:  # cached numbers: sample (and score) only the grid's clips
            clips, scores = sample(shown)
            sampled = clips, scores.good
        clips, good = sampled[0][:shown], sampled[1][:shown]
        save_grid(clips.transpose(1, 2).flatten(0, 1), good.repeat_interleave(frames), out_dir / f"{name}.png",
                  columns=frames)
    return result


def describe_clips(result: dict) -> str:
    dims = ", ".join(f"{dim} {result[dim]:.3f} [{result[dim + '_ci95'][0]:.3f}, {result[dim + '_ci95'][1]:.3f}]"
                     for dim in ANIMATION_DIMS)
    low, high = result["good_rate_ci95"]
    return (f"{result['model']}: good clips {100 * result['good_rate']:.1f}% [{100 * low:.1f}, {100 * high:.1f}] "
            f"of {result['num_samples']}; {dims}")


def evaluator(data_cfg):
    """How a dataset's models are scored: SynthHands clips (synth_anim, anim_mix) or hands."""
    from prefopt.data.synth_anim import ANIMATION_DATA

    if data_cfg.name in ANIMATION_DATA:
        return partial(evaluate_clips, frames=data_cfg.num_frames or 4, size=data_cfg.image_size)
    return evaluate_model


def evaluate_against_base(cfg, policy, out_dir: Path) -> dict:
    """Score the base model of ``cfg`` (a Config; cached per machine) and the trained ``policy`` on
    the same seeds."""
    from prefopt.models import build_model

    base = build_model(cfg.model)
    kwargs = {"out_dir": out_dir, "num_samples": cfg.eval.num_samples, "seed": cfg.eval.seed, "steps": cfg.eval.steps}
    evaluate = evaluator(cfg.data)
    return {"base": evaluate(base.denoiser, base.scheduler, "base", **kwargs),
            "aligned": evaluate(policy, base.scheduler, "aligned", **kwargs)}


def sample_table(cfg, policy, count: int = 16) -> list[dict]:
    """The first ``count`` evaluation samples of base and trained model with their rewards."""
    from prefopt.models import build_model
    from prefopt.rewards.hands import score
    from prefopt.sampling import generate

    base = build_model(cfg.model)
    rows = []
    for who, denoiser in (("base", base.denoiser), ("aligned", policy)):
        images = generate(denoiser, base.scheduler, count, seed=cfg.eval.seed, steps=cfg.eval.steps)
        scores = score(images)
        rows += [{"model": who, "image": image, "good": bool(good), "reward": float(reward)}
                 for image, good, reward in zip(images, scores.good, scores.reward, strict=True)]
    return rows


def describe(result: dict) -> str:
    if "frames" in result:
        return describe_clips(result)
    low, high = result["good_rate_ci95"]
    return (f"{result['model']}: good hands {100 * result['good_rate']:.1f}% "
            f"[{100 * low:.1f}, {100 * high:.1f}] of {result['num_samples']}, "
            f"mean reward {result['mean_reward']:.3f}, independent check {100 * result['independent_rate']:.1f}%, "
            f"denoising error in/out of the hand {result['err_in_hand']:.4f}/{result['err_out_hand']:.4f}")


def load_run(run_dir: Path):
    """(denoiser, scheduler) of a finished ``prefopt.train`` run: its model with ``final/`` weights."""
    from prefopt.config import LoraConfig, ModelConfig
    from prefopt.models import build_model, load_trained

    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"run={run_dir}: no .hydra/config.yaml (not a prefopt.train run dir)")
    saved = OmegaConf.load(config_path)
    model = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), saved.model))
    lora = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(LoraConfig), saved.lora))
    bundle = build_model(model)
    return load_trained(bundle, lora, run_dir / "final"), bundle.scheduler


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def app(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from prefopt.cli import to_config
    from prefopt.models import build_model

    config = to_config(cfg)
    if config.run:
        run_dir = Path(config.run)
        denoiser, scheduler = load_run(run_dir)
        name, out_dir = "aligned", run_dir / "eval"
    else:
        bundle = build_model(config.model)
        denoiser, scheduler = bundle.denoiser, bundle.scheduler
        name, out_dir = config.model.name, Path(HydraConfig.get().runtime.output_dir)
    result = evaluate_model(denoiser, scheduler, name, out_dir, config.num_samples, config.seed, config.steps)
    print(describe(result))
    print(f"results: {out_dir / (name + '.json')}")


def main() -> None:
    from prefopt.cli import run_app

    run_app(app, CONF_DIR, "evaluate")


if __name__ == "__main__":
    main()
