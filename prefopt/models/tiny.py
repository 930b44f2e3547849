"""Tiny random-init diffusers models for the embedded default, tests and benchmarks.

``materialize(cfg)`` builds ``cfg.denoiser_class(**cfg.config)`` with seed ``cfg.seed`` and a
default ``cfg.scheduler_class``, writes both with ``save_pretrained`` into a folder keyed by a hash
of what defines them, and returns the folder; the caller loads it with ``from_pretrained`` like
any real model. No hub access.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from prefopt.errors import ConfigError
from prefopt.io import reraise


def _key(cfg) -> str:
    spec = {"denoiser": cfg.denoiser_class, "config": dict(cfg.config), "seed": cfg.seed,
            "scheduler": cfg.scheduler_class, "subfolder": cfg.subfolder}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=list).encode()).hexdigest()[:16]


def materialize(cfg) -> Path:
    import diffusers

    root = Path(os.path.expanduser(cfg.cache_dir)) / f"{cfg.name}-{_key(cfg)}"
    if (root / "scheduler" / "scheduler_config.json").exists():
        return root
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    from prefopt.models.builders import diffusers_class

    denoiser_cls = diffusers_class(cfg.denoiser_class, "model.denoiser_class")
    try:
        with torch.random.fork_rng():  # the caller's RNG stream is the same whether or not the folder was cached
            torch.manual_seed(cfg.seed)
            denoiser = denoiser_cls(**dict(cfg.config))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model.config: {cfg.denoiser_class} rejects it: {str(error).splitlines()[0]}") from None
    try:
        denoiser.save_pretrained(tmp / cfg.subfolder if cfg.subfolder else tmp)
        getattr(diffusers, cfg.scheduler_class)().save_pretrained(tmp / "scheduler")
    except Exception as error:  # noqa: BLE001 - a full disk or a bug: no half-written folder stays either way
        reraise(error, root, lambda: shutil.rmtree(tmp, ignore_errors=True))
    try:
        tmp.rename(root)
    except OSError:  # another process materialized it first
        shutil.rmtree(tmp, ignore_errors=True)
    return root
