"""Preference data from files: a JSONL manifest (``data=files data.path=<manifest>``).

One JSON object per line; paths are relative to the manifest's folder:

    {"winner": "img/0001_a.png", "loser": "img/0001_b.png", "reward_w": 0.9, "reward_l": 0.2}
    {"winner": "clips/0002.mp4"}                     # unpaired (SFT, IPA); videos: data.num_frames
    {"winner": "a.png", "loser": "b.png", "prompt": "a hand waving"}   # text-conditioned models

A ``.parquet`` path is read as Pick-a-Pic-style pairs (prefopt/data/pickapic.py: ties dropped,
winners first); ``data.stages`` gives HG-DPO one manifest per curriculum stage.

``prompt`` is optional (missing: the empty prompt); latent model families encode it with their
text encoders (prefopt/data/latents.py).

Every row is validated when the data is first read, each problem one line naming the manifest's
line and the file: missing or unreadable images and videos, winner/loser of different sizes or
frame counts, a wrong frame count, winner == loser, missing keys, rewards that are not finite, out
of [0, 1] or not winner > loser. ``data.on_bad=fail`` (default) stops at start-up with the first
problem and the count; ``skip`` drops the bad rows and logs how many and which.

Decoded, resized tensors and the report are cached under ``$PREFOPT_CACHE/data``, keyed by the
manifest's bytes, every referenced file's size and mtime, and the decoding settings: a later start
with unchanged files reads the cache instead of decoding again (``python -m prefopt.validate``
fills it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from prefopt.data.media import is_video, read_frames
from prefopt.data.preference import PreferenceDataset
from prefopt.errors import ConfigError
from prefopt.io import save_tensors, write_json

log = logging.getLogger("prefopt")


@dataclass
class Report:
    """What reading a manifest found: ``problems`` are one line each; ``kept`` the usable rows."""

    manifest: str
    rows: int = 0
    kept: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)  # one per kept row
    key: str = ""  # the cache key: the manifest, its files and the decoding settings
    ties: int = 0  # Pick-a-Pic-style pairs: comparisons dropped as ties


def _decode(path: Path, size: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(tensor (3, H, W) or (3, T, H, W) in [-1, 1] at ``size``, original (frames,) + (height, width))."""
    import cv2
    import numpy as np

    frames = read_frames(path)
    resized = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    if is_video(path):
        original, array = (len(frames), *frames[0].shape[:2]), resized.transpose(3, 0, 1, 2)  # (3, T, H, W)
    else:
        original, array = frames[0].shape[:2], resized[0].transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array)).float() / 127.5 - 1, tuple(original)


def _cache_key(manifest: Path, lines: list[str], cfg, paired: bool) -> str:
    digest = hashlib.sha256(b"v2" + manifest.read_bytes())
    digest.update(f"{cfg.image_size}|{cfg.num_frames}|{paired}".encode())
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        for key in ("winner", "loser"):
            if isinstance(row, dict) and isinstance(row.get(key), str):
                path = manifest.parent / row[key]
                stat = path.stat() if path.is_file() else None
                digest.update(f"{path}|{stat and stat.st_size}|{stat and stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _reward(row: dict, key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} is {value!r}, not a number")
    if not math.isfinite(value):
        raise ValueError(f"{key} is {value}, not finite")
    if not 0 <= value <= 1:
        raise ValueError(f"{key} is {value}, outside [0, 1]")
    return float(value)


def read_manifest(cfg, paired: bool) -> tuple[dict[str, torch.Tensor], Report]:
    """Decode and validate every row of ``cfg.path``: (tensors of the kept rows, report)."""
    from prefopt.paths import cache_root

    if not cfg.path:
        raise ConfigError("data.path: data=files needs a JSONL manifest")
    manifest = Path(cfg.path).expanduser()
    if not manifest.is_file():
        raise ConfigError(f"data.path: {manifest}: no such file")
    if manifest.suffix == ".parquet":  # Pick-a-Pic-style pairs: converted once to a manifest of files
        from prefopt.data.pickapic import convert

        converted = convert(manifest, cache_root() / "pickapic")
        tensors, report = _read_jsonl(converted.manifest, cfg, paired)
        report.manifest, report.ties = str(manifest), converted.ties
        report.rows += len(converted.problems) + converted.ties
        report.problems = converted.problems + report.problems
        return tensors, report
    return _read_jsonl(manifest, cfg, paired)


def _read_jsonl(manifest: Path, cfg, paired: bool) -> tuple[dict[str, torch.Tensor], Report]:
    from safetensors.torch import load_file

    from prefopt.paths import cache_root

    lines = manifest.read_text(encoding="utf-8", errors="replace").splitlines()
    key = _cache_key(manifest, lines, cfg, paired)
    cache = cache_root() / "data" / key
    if cache.with_suffix(".json").is_file():
        report = Report(**json.loads(cache.with_suffix(".json").read_text()))
        tensors = load_file(cache.with_suffix(".safetensors")) if report.kept else {}
        return tensors, report

    report, columns = Report(manifest=str(manifest), key=key), {"winner": [], "loser": [], "reward_w": [], "reward_l": []}
    shapes: dict[str, tuple[int, ...]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        report.rows += 1
        try:
            row = _read_row(line, manifest, cfg, paired, shapes)
        except (ValueError, json.JSONDecodeError) as error:
            report.problems.append(f"{manifest}:{number}: {error}")
            continue
        report.kept.append(number)
        report.prompts.append(row.pop("prompt"))
        for name, value in row.items():
            columns[name].append(value)
    tensors = _stack(columns, paired) if report.kept else {}
    if tensors:
        save_tensors(cache.with_suffix(".safetensors"), tensors)
    write_json(cache.with_suffix(".json"), report.__dict__)  # last: the report marks the cache complete
    return tensors, report


def _read_row(line: str, manifest: Path, cfg, paired: bool, shapes: dict) -> dict:
    """One manifest line, decoded and checked: ``winner`` (``loser``, ``reward_w``, ``reward_l``) and
    ``prompt``; a problem raises ValueError with its one-line description."""
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    keys = ["winner", "loser"] if paired else ["winner"]
    missing = [k for k in keys if not isinstance(row.get(k), str)]
    if missing:
        need = " (the objective is paired)" if missing == ["loser"] else ""
        raise ValueError(f"no {missing[0]!r} path{need}")
    decoded, originals = {}, {}
    for key in keys:
        decoded[key], originals[key] = _read_media(manifest.parent / row[key], key, cfg)
    if paired:
        _check_pair(manifest, row, decoded, originals)
    prompt = row.get("prompt", "")
    if not isinstance(prompt, str):
        raise ValueError(f"prompt is {prompt!r}, not a string")
    rewards = _rewards(row) if paired else {}
    shape = tuple(decoded["winner"].shape)
    first = shapes.setdefault("winner", shape)
    if shape != first:
        raise ValueError(f"winner has shape {shape}, earlier rows {first} (set data.num_frames)")
    return {**decoded, **rewards, "prompt": prompt}


def _rewards(row: dict) -> dict:
    reward_w, reward_l = _reward(row, "reward_w"), _reward(row, "reward_l")
    if (reward_w is None) != (reward_l is None):
        raise ValueError("reward_w and reward_l come together (got only one)")
    if reward_w is not None and reward_w <= reward_l:
        raise ValueError(f"reward_w {reward_w} <= reward_l {reward_l}")
    return {"reward_w": reward_w, "reward_l": reward_l}


def _read_media(path: Path, key: str, cfg) -> tuple[torch.Tensor, tuple[int, ...]]:
    if not path.is_file():
        raise ValueError(f"{key} {path}: no such file")
    try:
        decoded, original = _decode(path, cfg.image_size)
    except ValueError as error:
        raise ValueError(f"{key} {path}: {error}") from None
    frames = original[0] if decoded.dim() == 4 else None
    if cfg.num_frames is not None and frames != cfg.num_frames:
        raise ValueError(f"{key} {path} has {frames or 'no'} frames, data.num_frames={cfg.num_frames}")
    return decoded, original


def _check_pair(manifest: Path, row: dict, decoded: dict, originals: dict) -> None:
    if (manifest.parent / row["winner"]).resolve() == (manifest.parent / row["loser"]).resolve() \
            or torch.equal(decoded["winner"], decoded["loser"]):
        raise ValueError("winner and loser are the same image")
    if originals["winner"] != originals["loser"]:
        raise ValueError(f"winner is {'x'.join(map(str, originals['winner']))} but loser is "
                         f"{'x'.join(map(str, originals['loser']))}")


def _stack(columns: dict, paired: bool) -> dict[str, torch.Tensor]:
    tensors = {"winner": torch.stack(columns["winner"])}
    if paired:
        tensors["loser"] = torch.stack(columns["loser"])
        if all(r is not None for r in columns["reward_w"]):
            tensors["reward_w"] = torch.tensor(columns["reward_w"])
            tensors["reward_l"] = torch.tensor(columns["reward_l"])
    return tensors


def build_files(cfg, paired: bool, stage: str | None = None, model=None) -> PreferenceDataset:
    if stage is not None and cfg.stages:
        if stage not in cfg.stages:
            raise ConfigError(f"data.stages.{stage}: no manifest for the {stage} stage (data.stages has "
                              f"{', '.join(sorted(cfg.stages))})")
        cfg = replace(cfg, path=cfg.stages[stage])
    tensors, report = read_manifest(cfg, paired)
    if report.rows == 0:
        raise ConfigError(f"data.path: {report.manifest}: the manifest has no rows")
    if report.problems:
        if cfg.on_bad == "fail":
            more = f" (and {len(report.problems) - 1} more bad rows)" if len(report.problems) > 1 else ""
            raise ConfigError(f"{report.problems[0]}{more}; data.on_bad=skip drops bad rows")
        log.warning("data.on_bad=skip: dropped %d of %d rows of %s:\n%s", len(report.problems), report.rows,
                    report.manifest, "\n".join(report.problems))
    if not report.kept:
        raise ConfigError(f"data.path: {report.manifest}: no usable row (all {report.rows} are bad)")
    if report.ties:
        log.info("%s: dropped %d ties of %d comparisons", report.manifest, report.ties, report.rows)
    dataset = PreferenceDataset(**tensors, name=f"data.path={report.manifest}", prompts=report.prompts)
    dataset.info.update(cache_key=report.key, ties_dropped=report.ties)
    return dataset
