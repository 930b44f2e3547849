"""SynthHands Animation evaluation (``eval=synthhands_anim``): ``num_samples`` clips, each under its
own condition (motion, audio and reference image, drawn from ``seed``), scored per dimension
(reward.py); mean and 95% interval of each, the good-clip rate with a Wilson interval; what the
reward does not measure (quality.py: per-frame and temporal Fréchet distances to the good clips the
same conditions ask for, diversity, coverage, two judges counted per frame, the denoising error on
those clips); ``<name>.json`` and a PNG of 16 clips (one row a clip: its reference image framed
blue, then its frames left to right, framed green for a good clip, red for a bad one)."""

from __future__ import annotations

from pathlib import Path

import torch

from prefopt.evaluation import cached, mean_ci, proportion_ci, write_result
from prefopt.evaluation.grid import save_grid
from prefopt.tasks.synthhands.quality import describe
from prefopt.tasks.synthhands_anim.reward import DIMENSIONS as SCORED

DIMENSIONS = (*SCORED, "reward")


class SynthHandsAnimEvaluator:
    def __init__(self, num_samples: int = 512, seed: int = 10_000, steps: int = 30, frames: int = 4, size: int = 16,
                 grid: int = 16):
        self.num_samples, self.seed, self.steps = num_samples, seed, steps
        self.frames, self.size, self.grid = frames, size, grid

    def _conditions(self):
        from prefopt.tasks.synthhands_anim.animate import Conditions

        return Conditions.draw(self.num_samples, self.frames, self.size, torch.Generator().manual_seed(self.seed))

    def _sample(self, denoiser, scheduler, count: int):
        from prefopt.sampling import generate
        from prefopt.tasks.synthhands_anim.reward import score_clips

        cond = {key: value[:count] for key, value in self._conditions().cond(self.size).items()}
        clips = generate(denoiser, scheduler, count, seed=self.seed, steps=self.steps,
                         sample_shape=(3, self.frames, self.size, self.size), cond=cond)
        return clips, score_clips(clips, cond), cond["reference"]

    def _beyond_reward(self, denoiser, scheduler, clips: torch.Tensor) -> dict:
        """quality.py's numbers of ``clips`` and the denoising error on the clips they are compared with."""
        from prefopt.evaluation.drift import denoising_errors
        from prefopt.tasks.synthhands_anim.quality import clip_quality

        conditions = self._conditions()
        ideal = conditions.ideal(self.size)[0]
        errors = denoising_errors(denoiser, scheduler, ideal, torch.Generator().manual_seed(self.seed),
                                  cond=conditions.cond(self.size))
        return {**clip_quality(clips, ideal, self.seed), "render_error": float(errors.policy_err.mean())}

    def evaluate(self, denoiser, scheduler, name: str, out_dir: Path | None = None) -> dict:
        from prefopt.sampling import model_fingerprint

        def compute():
            clips, scores, reference = self._sample(denoiser, scheduler, self.num_samples)
            rate, low, high = proportion_ci(int(scores.good.sum()), self.num_samples)
            result = {"seed": self.seed, "steps": self.steps, "frames": self.frames, "num_samples": self.num_samples,
                      "good_rate": rate, "good_rate_ci95": [low, high], "dimensions": list(SCORED)}
            for dim in DIMENSIONS:
                mean, low, high = mean_ci(getattr(scores, dim))
                result.update({dim: mean, f"{dim}_ci95": [low, high]})
            result.update(self._beyond_reward(denoiser, scheduler, clips))
            return result, (clips, scores.good, reference)

        key = (f"{model_fingerprint(denoiser)}-i2v-n{self.num_samples}-seed{self.seed}-steps{self.steps}"
               f"-T{self.frames}-v3")
        result, sampled = cached(key, compute)
        result = {"model": name, **result}
        if out_dir is not None:
            write_result(out_dir, name, result)
            shown = min(self.grid, self.num_samples)
            if sampled is None:  # cached numbers: sample (and score) only the grid's clips
                clips, scores, reference = self._sample(denoiser, scheduler, shown)
                sampled = clips, scores.good, reference
            save_clip_grid(*(part[:shown] for part in sampled), Path(out_dir) / f"{name}.png")
        return result

    @staticmethod
    def describe(result: dict) -> str:
        dims = ", ".join(f"{dim} {result[dim]:.3f} [{result[dim + '_ci95'][0]:.3f}, {result[dim + '_ci95'][1]:.3f}]"
                         for dim in DIMENSIONS)
        low, high = result["good_rate_ci95"]
        t_low, t_high = result["fd_temporal_ci95"]
        return (f"{result['model']}: good clips {100 * result['good_rate']:.1f}% [{100 * low:.1f}, {100 * high:.1f}] "
                f"of {result['num_samples']}; {dims}; per frame: independent check {100 * result['independent_rate']:.1f}%, "
                f"{describe(result)}; temporal FD {result['fd_temporal']:.2f} [{t_low:.2f}, {t_high:.2f}], "
                f"denoising error on renders {result['render_error']:.4f}")


def save_clip_grid(clips: torch.Tensor, good: torch.Tensor, reference: torch.Tensor, path: Path) -> None:
    """One row per clip: its reference image (framed blue), then its T frames (green: a good clip)."""
    n, _, frames = clips.shape[:3]
    tiles = torch.cat([reference[:, None], clips.transpose(1, 2)], dim=1)  # (N, 1 + T, 3, H, W)
    given = torch.zeros(n, 1 + frames, dtype=torch.bool)
    given[:, 0] = True
    save_grid(tiles.flatten(0, 1), good.repeat_interleave(1 + frames), path, columns=1 + frames,
              given=given.flatten())
