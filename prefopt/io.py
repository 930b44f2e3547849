"""Atomic writes: a file is written under a temporary name in its folder, flushed to disk, then
renamed over the target, so a reader (or a run killed mid-write) sees the old file or the new one,
never half of one."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` fills a temporary file next to ``path``, which then replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")  # the suffix tells writers the format
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, value, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(value, indent=indent))


def save_tensors(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    """A safetensors file of ``tensors`` (made contiguous, on the CPU)."""
    from safetensors.torch import save_file

    plain = {key: value.detach().contiguous().cpu() for key, value in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(plain, tmp, metadata=metadata))
