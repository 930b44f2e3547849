"""Preference data from files (``data=files data.path=...``), streamed: never decoded whole.

``data.path`` is a JSONL manifest, Parquet shards (a file, a folder or a glob: Pick-a-Pic v2's
format) or a ``datasets`` folder (prefopt/data/sources.py); ``data.columns`` maps another schema's
column names; ``data.stages`` gives HG-DPO one source per curriculum stage. The manifest schema:

    {"winner": "img/0001_a.png", "loser": "img/0001_b.png", "reward_w": 0.9, "reward_l": 0.2}
    {"winner": "clips/0002.mp4"}                     # unpaired (SFT, IPA); videos: data.num_frames
    {"winner": "a.png", "loser": "b.png", "prompt": "a hand waving"}   # text-conditioned models

Pick-a-Pic rows (``jpg_0``/``jpg_1``, ``label_0``, ``caption``) put the preferred image first; ties
are dropped and counted (prefopt/data/rows.py).

One pass, shared by every process, reads and checks each row (missing or unreadable images and
videos, pairs of different sizes or frame counts, a wrong frame count, winner == loser, missing
keys, rewards that are not finite, outside [0, 1] or not winner > loser: each problem one line
naming the shard or manifest and the row) and encodes the kept rows into the on-disk cache that
training reads (prefopt/data/cache.py). ``data.on_bad=fail`` (default) stops at start-up with the
first problem and the count of the rest; ``skip`` trains on the rest. The pass is cached, so the
next start (or ``skip`` after a ``fail``) goes straight to training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch

from prefopt.data.cache import CachedPairs, Settings, Single, precompute, probe, summary_line
from prefopt.data.encoders import FamilyEncoder, PixelEncoder
from prefopt.data.sources import open_source
from prefopt.errors import ConfigError

log = logging.getLogger("prefopt")


@dataclass
class Runtime:
    """What a builder that works with every process needs from the run."""

    processes: object = None  # the Accelerator (process_index, num_processes, device, wait_for_everyone), or Single
    dtype: torch.dtype = torch.float32  # of the frozen encoders
    hand_aware: object = None  # the run's HandAware
    workers: int = 0  # DataLoader workers that read and decode

    def __post_init__(self):
        self.processes = self.processes or Single()


def stage_config(cfg, stage: str | None):
    """``cfg`` with ``path`` set to the stage's source when ``data.stages`` gives one per stage."""
    if stage is None or not cfg.stages:
        return cfg
    if stage not in cfg.stages:
        raise ConfigError(f"data.stages.{stage}: no manifest for the {stage} stage (data.stages has "
                          f"{', '.join(sorted(cfg.stages))})")
    return replace(cfg, path=cfg.stages[stage])


def _masker(hand_aware, encoder):
    """(masks made in the pass, their settings) for ``hand_aware.source=mediapipe``; else (None, "")."""
    if hand_aware is None or not hand_aware.enabled or hand_aware.source != "mediapipe":
        return None, ""
    from prefopt.modules.hand_aware.sources import pixel_masks
    from prefopt.paths import cache_root

    def masker(pixels, sample_shape):
        return pixel_masks(pixels, hand_aware, cache_root() / "hand_masks", sample_shape)

    return masker, f"mediapipe|{hand_aware.margin}|{hand_aware.feather}|{hand_aware.dilate}"


def build_files(cfg, paired: bool, stage: str | None = None, model=None, runtime: Runtime | None = None):
    """The data at ``data.path``, read, checked and encoded once (every process its share), as a
    :class:`CachedPairs`. ``model``: the ModelBundle whose family encodes it (None: pixels)."""
    from prefopt.paths import cache_root

    runtime, cfg = runtime or Runtime(), stage_config(cfg, stage)
    source = open_source(cfg.path, cfg.columns)
    fam = model.family if model is not None else None
    encoder = (FamilyEncoder(fam, model.path, cfg.image_size, runtime.processes.device, runtime.dtype) if fam
               else PixelEncoder())
    hand_aware = runtime.hand_aware
    if hand_aware is not None and hand_aware.enabled and hand_aware.source == "renderer":
        raise ConfigError(f"hand_aware.source=renderer: data.path={cfg.path} carries no hand masks "
                          "(SynthHands data does; use hand_aware.source=mediapipe or file)")
    masker, masks = _masker(hand_aware, encoder)
    settings = Settings(cfg.image_size, cfg.num_frames, paired, encoder.fingerprint, masks)
    if fam is not None:  # before the encoders see it: images for a video model, a frame count it cannot take
        shape = probe(source, settings)
        if shape is not None:
            fam.check_sample(shape, f"data.path={cfg.path}")
    folder = precompute(source, settings, encoder, runtime.processes, cache_root() / "latents", runtime.workers, masker)
    dataset = CachedPairs(folder, f"data.path={cfg.path}", paired)
    _report(dataset.index, cfg, source)
    if hand_aware is not None and hand_aware.enabled and hand_aware.source == "file":
        from prefopt.modules.hand_aware.sources import file_masks

        dataset.set_masks(file_masks(hand_aware, dataset))
    return dataset


build_files.streams = True  # every process builds it together; it comes back encoded, with its masks


def _report(index: dict, cfg, source) -> None:
    if index["rows"] == 0:
        raise ConfigError(f"data.path: {cfg.path}: the manifest has no rows")
    problems = index["problems"]
    if problems:
        if cfg.on_bad == "fail":
            more = f" (and {len(problems) - 1} more bad rows)" if len(problems) > 1 else ""
            raise ConfigError(f"{problems[0]}{more}; data.on_bad=skip drops bad rows")
        log.warning("data.on_bad=skip: dropped %d of %d rows of %s:\n%s", len(problems), index["rows"], cfg.path,
                    "\n".join(problems[:20]) + (f"\n... ({len(problems) - 20} more)" if len(problems) > 20 else ""))
    if not index["kept"]:
        raise ConfigError(f"data.path: {cfg.path}: no usable row (all {index['rows']} are bad)")
    log.info(summary_line(index, source))
