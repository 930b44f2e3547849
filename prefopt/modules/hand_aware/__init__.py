"""Hand-aware local optimization (IPA's HALO), for every objective: the per-sample error weighs
each latent cell by W = 1 + (lambda - 1) M, M the hand mask on the latent grid.

    masker.py   mediapipe hand landmarks -> convex hull -> dilation -> feathering (real images, videos)
    cache.py    masks computed once per file/image content
    grid.py     masks on the latent grid (area pooling, causal temporal compression), the weights W
    sources.py  the masks of a training dataset, by ``hand_aware.source``

Config (the ``hand_aware`` block of conf/config.yaml): ``enabled``, ``lambda``, ``dilate``, ``source``
(renderer | mediapipe | file), ``path`` (source=file), ``margin``/``feather`` (mediapipe masks),
``reference_frame`` (image-to-video models: latent frame 0 keeps weight 1).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from prefopt.errors import ConfigError

SOURCES = ("renderer", "mediapipe", "file")


@dataclass(frozen=True)
class HandAware:
    """The validated ``hand_aware`` block (``lambda`` is a Python keyword: the field is ``weight``)."""

    enabled: bool = False
    weight: float = 10.0
    dilate: int = 0
    source: str = "renderer"
    path: str | None = None
    margin: float = 0.08
    feather: float = 0.05
    reference_frame: bool = False

    @classmethod
    def from_block(cls, block: dict[str, Any]) -> HandAware:
        unknown = sorted(set(block) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"hand_aware.{unknown[0]}: unknown key (known: {', '.join(DEFAULTS)})")
        values = {**DEFAULTS, **block}
        values["weight"] = values.pop("lambda")
        types = {f.name: f.type for f in fields(cls)}
        for name, value in values.items():
            key = "lambda" if name == "weight" else name
            if types[name] == "bool" and not isinstance(value, bool):
                raise ConfigError(f"hand_aware.{key} must be true or false, got {value!r}")
            if types[name] in ("float", "int") and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ConfigError(f"hand_aware.{key} must be a number, got {value!r}")
        hand_aware = cls(**values)
        if hand_aware.weight < 1:
            raise ConfigError(f"hand_aware.lambda must be >= 1 (weight 1 is no emphasis), got {hand_aware.weight}")
        if hand_aware.dilate < 0 or hand_aware.dilate != int(hand_aware.dilate):
            raise ConfigError(f"hand_aware.dilate must be a whole number of latent cells >= 0, got {hand_aware.dilate}")
        if hand_aware.source not in SOURCES:
            raise ConfigError(f"hand_aware.source must be one of {list(SOURCES)}, got {hand_aware.source!r}")
        if hand_aware.enabled and hand_aware.source == "file" and not hand_aware.path:
            raise ConfigError("hand_aware.path: source=file needs a safetensors file of masks (mask_w, mask_l)")
        return hand_aware


DEFAULTS: dict[str, Any] = {("lambda" if f.name == "weight" else f.name): f.default for f in fields(HandAware)}
