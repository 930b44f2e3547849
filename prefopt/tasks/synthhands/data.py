"""SynthHands datasets (SPEC s.4).

``synth`` (the benchmark): one pool of ``num_samples`` base-model samples, drawn with seed
``seed`` and cached on disk (keyed by the model's weights, seed, count and sampling steps), scored
ONCE by :func:`prefopt.tasks.synthhands.reward.score`: exactly ``num_samples`` reward calls for every objective.

    SFT, IPA (unpaired):  winners = the pool's strict good hands
    DPO, GAPO (paired):   every bad sample is a loser, paired with a good one (cycling through the
                          good ones in a seeded order); reward_w = 1 > reward_l = its graded reward
    HG-DPO stages:        the same losers, with winners
        easy    the pool's good hands (as DPO)
        normal  real renders of good hands, part-noised (``sdedit_strength``) and denoised by the
                base model: the intermediate domain
        hard    real renders of good hands ("real pool": fresh renders, never generated)

``mix``: the pretraining mixture of renders, a ``good_fraction`` of good hands and the rest bad
(k in {3, 4, 6, 7}, or five fused fingers), unpaired.

``renders``: renders labelled by the renderer's ground truth (good winner, bad loser of the same
pose and colours); fast, no model needed (tests, smoke runs).

Every dataset carries hand masks (``mask_w``, ``mask_l``) for hand-aware weighting
(prefopt.modules.hand_aware, ``hand_aware.source=renderer``): the renderer's own mask for renders,
the detector's for model samples and SDEdit reconstructions.
"""

from __future__ import annotations

import logging

import torch

from prefopt.data.preference import PreferenceDataset
from prefopt.errors import ConfigError
from prefopt.sampling import cached_samples
from prefopt.tasks.synthhands.render import ARC_DEGREES, BAD_FINGERS, GOOD_FINGERS, render, sample_specs

log = logging.getLogger("prefopt")
FUSED_SHARE = 0.2  # of bad hands


def _bad_specs(n: int, size: int, generator: torch.Generator):
    """Bad hands: k in {3, 4, 6, 7}, or (a FUSED_SHARE of them) five fingers over a narrow arc."""
    bad = torch.tensor(BAD_FINGERS)[torch.randint(0, len(BAD_FINGERS), (n,), generator=generator)]
    fused = torch.rand(n, generator=generator) < FUSED_SHARE
    spec = sample_specs(n, size, fingers=torch.where(fused, torch.full_like(bad, GOOD_FINGERS), bad),
                        fused=fused, generator=generator)
    return spec, fused


def build_renders(cfg, paired: bool, stage: str | None = None, model=None) -> PreferenceDataset:
    n, size = cfg.num_samples, cfg.image_size
    generator = torch.Generator().manual_seed(cfg.seed)
    spec = sample_specs(n, size, generator=generator)
    winner, mask_w = render(spec, size)
    if not paired:
        return PreferenceDataset(winner, name="data=renders", mask_w=mask_w)
    bad, fused = _bad_specs(n, size, generator)
    for key in ("angle", "center", "skin", "background"):  # same pose and colours as the winner
        setattr(bad, key, getattr(spec, key))
    loser, mask_l = render(bad, size)
    reward_l = torch.where(fused, torch.tensor(0.5), 1 - (bad.fingers - GOOD_FINGERS).abs().float() / 4)
    return PreferenceDataset(winner, loser, torch.ones(n), reward_l, name="data=renders", mask_w=mask_w, mask_l=mask_l)


def build_mix(cfg, paired: bool, stage: str | None = None, model=None) -> PreferenceDataset:
    if paired:
        raise ConfigError("data=mix is the unpaired pretraining mixture; use objective=sft")
    n, size = cfg.num_samples, cfg.image_size
    generator = torch.Generator().manual_seed(cfg.seed)
    good = torch.rand(n, generator=generator) < cfg.good_fraction
    spec, _ = _bad_specs(n, size, generator)
    spec.fingers = torch.where(good, torch.full_like(spec.fingers, GOOD_FINGERS), spec.fingers)
    spec.arc = torch.where(good, torch.deg2rad(torch.tensor(ARC_DEGREES)).expand(n), spec.arc)
    images, masks = render(spec, size)
    return PreferenceDataset(images, name="data=mix", mask_w=masks)


def scored_pool(cfg, model):
    """(samples, HandScore) of the benchmark's pool: ``cfg.num_samples`` reward calls."""
    from prefopt.tasks.synthhands import reward as hands

    if model is None:
        raise ConfigError("data=synth samples the base model; no model was given")
    warn_if_random_init(model, "synth", "base")
    samples = cached_samples(model, cfg.num_samples, cfg.seed, cfg.sample_steps)
    return samples, hands.score(samples)


def build_synth(cfg, paired: bool, stage: str | None = None, model=None) -> PreferenceDataset:
    samples, scores = scored_pool(cfg, model)
    dataset = _synth_dataset(cfg, paired, stage, model, samples, scores)
    dataset.info = {"reward_calls": len(scores.good), "pool": {"good_rate": float(scores.good.float().mean()),
                                                                "mean_reward": float(scores.reward.mean())}}
    return dataset


build_synth.model_made = True  # a new round re-samples the pool from the policy


def warn_if_random_init(model, data: str, shipped: str) -> None:
    """A benchmark that aligns a model's samples wants its pretrained base, not random init."""
    if getattr(model, "random_init", False):
        log.warning("data=%s aligns the samples of a random-init model (model.path is null); its pretrained base "
                    "ships as model=%s", data, shipped)


def _synth_dataset(cfg, paired, stage, model, samples, scores) -> PreferenceDataset:
    good, bad = samples[scores.good], samples[~scores.good]
    masks = scores.detection.mask
    name = f"data=synth (pool of {len(samples)} base samples, {len(good)} good)"
    if len(good) == 0:
        raise ConfigError(f"{name}: no good hand to learn from; raise data.num_samples")
    if not paired:
        return PreferenceDataset(good, name=name, mask_w=masks[scores.good])
    if len(bad) == 0:
        raise ConfigError(f"{name}: no bad hand to pair against; raise data.num_samples")
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    order = torch.randperm(len(good), generator=generator)
    pick = order[torch.arange(len(bad)) % len(good)]
    reward_l = scores.reward[~scores.good]
    if stage in (None, "easy"):
        winner, mask_w = good[pick], masks[scores.good][pick]
    else:
        spec = sample_specs(len(bad), cfg.image_size, generator=generator)
        winner, mask_w = render(spec, cfg.image_size)  # the real pool: fresh renders of good hands
        if stage == "normal":
            from prefopt.sampling import reconstruct
            from prefopt.tasks.synthhands.detect import detect

            winner = reconstruct(model.denoiser, model.scheduler, winner, cfg.sdedit_strength,
                                 seed=cfg.seed + 2, steps=cfg.sample_steps)
            mask_w = detect(winner).mask
    return PreferenceDataset(winner, bad, torch.ones(len(bad)), reward_l, name=name,
                             mask_w=mask_w, mask_l=masks[~scores.good])
