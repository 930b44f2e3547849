"""SynthHands Animation datasets (SPEC s.4, prefopt/tasks/synthhands_anim/animate.py): every row carries its
condition, ``cond = {"motion": (N, 3, T, H, W), "audio": (N, 1, 4T, H, W), "reference": (N, 3, H, W)}``,
which the denoiser reads (model=tiny_video), and hand masks (``mask_w``, ``mask_l``: the renderer's
for renders, the detected foreground for model clips) for hand-aware weighting.

``synth_anim`` (the benchmark): a pool of ``num_samples`` base-model clips, ``clips_per_motion`` of
each condition (motion, audio and reference image, drawn with ``seed``), sampled once and cached, scored ONCE by
:func:`prefopt.tasks.synthhands_anim.reward.score_clips` (``num_samples`` reward calls for every objective):

    SFT, IPA (unpaired):  the pool's good clips, or with ``top_fraction`` its top fraction by reward
                          (prefopt/data/curation.py: ``top``), for a base that makes few good clips
    DPO, GAPO (paired):   per condition, its best clip against its worst (prefopt/data/curation.py:
                          ``best_worst``; equal rewards are ties, dropped); rewards = the clips' rewards
    HG-DPO stages:        per condition, against its worst clip:
        easy    its best clip (as DPO)
        normal  a real clip (the render of the reference hand following the motion and the audio),
                part-noised (``sdedit_strength``) and denoised by the base model under the same condition
        hard    the real clip

``anim_mix``: the pretraining mixture of rendered clips (``good_fraction`` good, the rest in equal
shares a wrong count, a flickering count, a hand that ignores the motion, fingers out of time with
the audio, or colours drifting from the reference), unpaired.
"""

from __future__ import annotations

import math

import torch

from prefopt.data import curation
from prefopt.data.preference import PreferenceDataset
from prefopt.errors import ConfigError
from prefopt.sampling import cached_samples
from prefopt.tasks.synthhands.data import warn_if_random_init
from prefopt.tasks.synthhands_anim.animate import Conditions, sample_clips


def _frames(cfg) -> int:
    return cfg.num_frames or 4


def build_anim_mix(cfg, paired: bool, stage: str | None = None, model=None) -> PreferenceDataset:
    if paired:
        raise ConfigError("data=anim_mix is the unpaired pretraining mixture; use objective=sft")
    clips, masks, cond, _ = sample_clips(cfg.num_samples, _frames(cfg), cfg.image_size, cfg.good_fraction,
                                         torch.Generator().manual_seed(cfg.seed))
    return PreferenceDataset(clips, name="data=anim_mix", mask_w=masks, cond=cond)


def pool_conditions(cfg) -> Conditions:
    """The pool's conditions, one row per clip: ``clips_per_motion`` consecutive clips share one."""
    count = math.ceil(cfg.num_samples / cfg.clips_per_motion)
    drawn = Conditions.draw(count, _frames(cfg), cfg.image_size, torch.Generator().manual_seed(cfg.seed))
    return drawn[torch.arange(count).repeat_interleave(cfg.clips_per_motion)[:cfg.num_samples]]


def _rows(cond: dict, index) -> dict:
    return {key: value[index] for key, value in cond.items()}


def scored_anim_pool(cfg, model):
    """(clips, condition, AnimationScore) of the benchmark's pool: ``num_samples`` reward calls."""
    from prefopt.tasks.synthhands_anim.reward import score_clips

    if model is None:
        raise ConfigError("data=synth_anim samples the base model; no model was given")
    warn_if_random_init(model, "synth_anim", "anim_base")
    cond = pool_conditions(cfg).cond(cfg.image_size)
    shape = (3, _frames(cfg), cfg.image_size, cfg.image_size)
    clips = cached_samples(model, cfg.num_samples, cfg.seed, cfg.sample_steps, sample_shape=shape,
                           cond=cond, tag=f"-i2v{_frames(cfg)}x{cfg.clips_per_motion}")
    return clips, cond, score_clips(clips, cond)


def build_synth_anim(cfg, paired: bool, stage: str | None = None, model=None) -> PreferenceDataset:
    clips, cond, scores = scored_anim_pool(cfg, model)
    name = f"data=synth_anim (pool of {len(clips)} base clips, {int(scores.good.sum())} good)"
    if not paired:
        if cfg.top_fraction is not None:
            kept, _ = curation.top([{"index": i, "score": float(r)} for i, r in enumerate(scores.reward)],
                                   cfg.top_fraction)
            keep = torch.tensor(sorted(row["index"] for row in kept))
        elif scores.good.any():
            keep = scores.good.nonzero().flatten()
        else:
            raise ConfigError(f"{name}: no good clip to learn from; raise data.num_samples or set data.top_fraction")
        dataset = PreferenceDataset(clips[keep], name=name, cond=_rows(cond, keep), mask_w=scores.mask[keep])
    else:
        rows = [{"index": i, "prompt_index": i // cfg.clips_per_motion, "score": float(r)}
                for i, r in enumerate(scores.reward)]
        pairs, counts = curation.pairs(rows, "best_worst")
        if not pairs:
            raise ConfigError(f"{name}: every condition's clips tie; raise data.clips_per_motion")
        win = torch.tensor([w["index"] for w, _ in pairs])
        lose = torch.tensor([lo["index"] for _, lo in pairs])
        winner, reward_w, mask_w = clips[win], scores.reward[win], scores.mask[win]
        if stage in ("normal", "hard"):
            winner, mask_w = pool_conditions(cfg)[win].ideal(cfg.image_size)  # the real pool: renders, never sampled
            reward_w = torch.ones(len(win))
            if stage == "normal":
                from prefopt.sampling import reconstruct

                winner = reconstruct(model.denoiser, model.scheduler, winner, cfg.sdedit_strength,
                                     seed=cfg.seed + 2, steps=cfg.sample_steps, cond=_rows(cond, win))
        dataset = PreferenceDataset(winner, clips[lose], reward_w, scores.reward[lose], name=name,
                                    cond=_rows(cond, win), mask_w=mask_w, mask_l=scores.mask[lose])
        dataset.info["pairs"] = counts["pairs"]
    dataset.info.update(reward_calls=len(clips), pool={"good_rate": float(scores.good.float().mean()),
                                                       "mean_reward": float(scores.reward.mean())})
    return dataset


build_synth_anim.model_made = True  # a new round re-samples the pool from the policy
