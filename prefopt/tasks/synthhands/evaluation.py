"""SynthHands evaluation (``eval=synthhands``): ``num_samples`` samples (default 512) from fixed
seeds, scored by the strict good-hand test and the graded reward (reward.py): the good-hand rate
with a Wilson 95% interval, the mean reward with a normal 95% interval, the independent check's
rate (check.py), the finger-count histogram and the hand-quality score (the share of samples with
five detected fingers), plus the model's denoising error on fresh renders of good hands, overall
(``render_error``: the report's drift is the trained model's minus the base's) and inside and
outside the hand (fixed noise and timesteps: what hand-aware weighting aims at). What the reward
does not measure (quality.py): the Fréchet distance to held-out renders in the feature network's
space with a bootstrap 95% interval, diversity and coverage, and the network's classifier, a second
judge the objectives never optimize. Writes
``<name>.json`` and a PNG grid of the first samples (a green frame marks a good hand). Results are
cached by the model's weights, seed, count and sampling steps, so the base model is sampled once
per machine.
"""

from __future__ import annotations

from pathlib import Path

import torch

from prefopt.evaluation import cached, mean_ci, proportion_ci, write_result
from prefopt.evaluation.grid import save_grid
from prefopt.tasks.synthhands.quality import describe
from prefopt.tasks.synthhands.render import GOOD_FINGERS


def summarize(scores, independent: torch.Tensor) -> dict:
    n = len(scores.good)
    rate, low, high = proportion_ci(int(scores.good.sum()), n)
    reward, r_low, r_high = mean_ci(scores.reward)
    independent_rate, i_low, i_high = proportion_ci(int(independent.sum()), n)
    fingers = torch.bincount(scores.detection.fingers.clamp(max=9), minlength=10)
    return {"num_samples": n, "good_rate": rate, "good_rate_ci95": [low, high],
            "mean_reward": reward, "mean_reward_ci95": [r_low, r_high],
            "independent_rate": independent_rate, "independent_rate_ci95": [i_low, i_high],
            "agreement": float((independent == scores.good).float().mean()),
            "hand_quality": float((scores.detection.fingers == GOOD_FINGERS).float().mean()),
            "fingers_histogram": {str(k): int(c) for k, c in enumerate(fingers.tolist()) if c}}


def hand_errors(denoiser, scheduler, num_samples: int, seed: int) -> dict:
    """Mean per-pixel denoising error of ``denoiser`` on ``num_samples`` renders of good hands, over
    the image and inside and outside their masks (one noise and uniform timestep per render, drawn
    from ``seed``)."""
    from prefopt.evaluation.drift import denoising_errors
    from prefopt.tasks.synthhands.render import render, sample_specs

    generator = torch.Generator().manual_seed(seed)
    size = denoiser.config.sample_size
    images, masks = render(sample_specs(num_samples, size, generator=generator), size)
    errors = denoising_errors(denoiser, scheduler, images, generator, region=masks)
    inside, outside = errors.region_err
    return {"render_error": float(errors.policy_err.mean()), "err_in_hand": float(inside.mean()),
            "err_out_hand": float(outside.mean())}


class SynthHandsEvaluator:
    """Good hands of one model on fixed seeds; ``grid`` samples go into its PNG."""

    def __init__(self, num_samples: int = 512, seed: int = 10_000, steps: int = 30, grid: int = 128):
        self.num_samples, self.seed, self.steps, self.grid = num_samples, seed, steps, grid

    def _sample(self, denoiser, scheduler, count: int):
        from prefopt.sampling import generate
        from prefopt.tasks.synthhands.reward import score

        samples = generate(denoiser, scheduler, count, seed=self.seed, steps=self.steps)
        return samples, score(samples)

    def evaluate(self, denoiser, scheduler, name: str, out_dir: Path | None = None) -> dict:
        """Sample, score and summarize one model; write ``<out_dir>/<name>.json`` and ``.png``."""
        from prefopt.sampling import model_fingerprint
        from prefopt.tasks.synthhands.check import independent_good
        from prefopt.tasks.synthhands.quality import quality

        def compute():
            samples, scores = self._sample(denoiser, scheduler, self.num_samples)
            return ({"seed": self.seed, "steps": self.steps, **summarize(scores, independent_good(samples)),
                     **quality(samples, self.seed), **hand_errors(denoiser, scheduler, self.num_samples, self.seed)},
                    (samples, scores.good))

        key = f"{model_fingerprint(denoiser)}-n{self.num_samples}-seed{self.seed}-steps{self.steps}-v4"
        result, sampled = cached(key, compute)
        result = {"model": name, **result}
        if out_dir is not None:
            write_result(out_dir, name, result)
            if self.grid:
                if sampled is None:  # cached numbers: sample (and score) only the grid's images
                    samples, scores = self._sample(denoiser, scheduler, min(self.grid, self.num_samples))
                    sampled = samples, scores.good
                save_grid(sampled[0][:self.grid], sampled[1][:self.grid], Path(out_dir) / f"{name}.png")
        return result

    def table(self, denoiser, scheduler, count: int = 16) -> list[dict]:
        """The first ``count`` evaluation samples with their rewards (a wandb table)."""
        images, scores = self._sample(denoiser, scheduler, count)
        return [{"image": image, "good": bool(good), "reward": float(reward)}
                for image, good, reward in zip(images, scores.good, scores.reward, strict=True)]

    @staticmethod
    def describe(result: dict) -> str:
        low, high = result["good_rate_ci95"]
        return (f"{result['model']}: good hands {100 * result['good_rate']:.1f}% "
                f"[{100 * low:.1f}, {100 * high:.1f}] of {result['num_samples']}, "
                f"mean reward {result['mean_reward']:.3f}, independent check {100 * result['independent_rate']:.1f}%, "
                f"{describe(result)}, "
                f"denoising error in/out of the hand {result['err_in_hand']:.4f}/{result['err_out_hand']:.4f}")

