"""SynthHands Animation datasets (SPEC s.4, prefopt/tasks/synthhands_anim/animate.py): every row carries its motion
condition, ``cond = {"motion": (N, 2, T, H, W)}``, which the denoiser reads (model=tiny_video).

``synth_anim`` (the benchmark): a pool of ``num_samples`` base-model clips, ``clips_per_motion`` of
each driving motion (motions drawn with ``seed``), sampled once and cached, scored ONCE by
:func:`prefopt.tasks.synthhands_anim.reward.score_clips` (``num_samples`` reward calls for every objective):

    SFT, IPA (unpaired):  the pool's good clips, or with ``top_fraction`` its top fraction by reward
                          (prefopt/data/curation.py: ``top``), for a base that makes few good clips
    DPO, GAPO (paired):   per motion, its best clip against its worst (prefopt/data/curation.py:
                          ``best_worst``; equal rewards are ties, dropped); rewards = the clips' rewards
    HG-DPO stages:        per motion, against its worst clip:
        easy    its best clip (as DPO)
        normal  a real clip (a fresh render of a good hand following the motion), part-noised
                (``sdedit_strength``) and denoised by the base model under the same motion
        hard    the real clip

``anim_mix``: the pretraining mixture of rendered clips (``good_fraction`` good, the rest a wrong
count, a flickering count or a hand that ignores the motion), unpaired.
"""

from __future__ import annotations

import math

import torch

from prefopt.data import curation
from prefopt.data.preference import PreferenceDataset
from prefopt.errors import ConfigError
from prefopt.sampling import cached_samples
from prefopt.tasks.synthhands.data import warn_if_random_init
from prefopt.tasks.synthhands.render import sample_specs
from prefopt.tasks.synthhands_anim.animate import driving_angles, motion_condition, render_clips, sample_clips


def _frames(cfg) -> int:
    return cfg.num_frames or 4


def build_anim_mix(cfg, paired: bool, stage: str | None = None, model=None) -> PreferenceDataset:
    if paired:
        raise ConfigError("data=anim_mix is the unpaired pretraining mixture; use objective=sft")
    clips, masks, cond, _ = sample_clips(cfg.num_samples, _frames(cfg), cfg.image_size, cfg.good_fraction,
                                         torch.Generator().manual_seed(cfg.seed))
    return PreferenceDataset(clips, name="data=anim_mix", mask_w=masks, cond={"motion": cond})


def motions(cfg) -> torch.Tensor:
    """(num_samples, T) driving angles of the pool: ``clips_per_motion`` consecutive clips share one."""
    count = math.ceil(cfg.num_samples / cfg.clips_per_motion)
    angles = driving_angles(count, _frames(cfg), torch.Generator().manual_seed(cfg.seed))
    return angles.repeat_interleave(cfg.clips_per_motion, dim=0)[:cfg.num_samples]


def scored_anim_pool(cfg, model):
    """(clips, condition, AnimationScore) of the benchmark's pool: ``num_samples`` reward calls."""
    from prefopt.tasks.synthhands_anim.reward import score_clips

    if model is None:
        raise ConfigError("data=synth_anim samples the base model; no model was given")
    warn_if_random_init(model, "synth_anim", "anim_base")
    cond = motion_condition(motions(cfg), cfg.image_size)
    shape = (3, _frames(cfg), cfg.image_size, cfg.image_size)
    clips = cached_samples(model, cfg.num_samples, cfg.seed, cfg.sample_steps, sample_shape=shape,
                        cond={"motion": cond}, tag=f"-anim{_frames(cfg)}x{cfg.clips_per_motion}")
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
        dataset = PreferenceDataset(clips[keep], name=name, cond={"motion": cond[keep]})
    else:
        rows = [{"index": i, "prompt_index": i // cfg.clips_per_motion, "score": float(r)}
                for i, r in enumerate(scores.reward)]
        pairs, counts = curation.pairs(rows, "best_worst")
        if not pairs:
            raise ConfigError(f"{name}: every motion's clips tie; raise data.clips_per_motion")
        win = torch.tensor([w["index"] for w, _ in pairs])
        lose = torch.tensor([lo["index"] for _, lo in pairs])
        winner, reward_w = clips[win], scores.reward[win]
        if stage in ("normal", "hard"):
            spec = sample_specs(len(win), cfg.image_size, generator=torch.Generator().manual_seed(cfg.seed + 1))
            angles = motions(cfg)[win]
            winner, _ = render_clips(spec, angles, size=cfg.image_size)  # the real pool: fresh renders
            reward_w = torch.ones(len(win))
            if stage == "normal":
                from prefopt.sampling import reconstruct

                winner = reconstruct(model.denoiser, model.scheduler, winner, cfg.sdedit_strength,
                                     seed=cfg.seed + 2, steps=cfg.sample_steps, cond={"motion": cond[win]})
        dataset = PreferenceDataset(winner, clips[lose], reward_w, scores.reward[lose], name=name, cond={"motion": cond[win]})
        dataset.info["pairs"] = counts["pairs"]
    dataset.info.update(reward_calls=len(clips), pool={"good_rate": float(scores.good.float().mean()),
                                                       "mean_reward": float(scores.reward.mean())})
    return dataset


build_synth_anim.model_made = True  # a new round re-samples the pool from the policy
