"""Atomic writes: a file (or a folder) is written under a temporary name next to its target,
flushed to disk, then renamed over the target, so a reader (or a run killed mid-write) sees the old
one or the new one, never half of one. A write that fails removes its temporary file and raises the
filesystem's ``OSError`` (with its errno, e.g. ENOSPC, and the path), whichever library was writing."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

NEARLY_FULL_BYTES = 1 << 20  # a write that failed with less than this left failed for want of space


def filesystem_error(error: BaseException, path: Path) -> OSError | None:
    """The filesystem's refusal behind a failed write to ``path`` (named in it unless the error names
    its own file), or None when it was something else (a bug). safetensors reports the OS error in
    its message; torch's writer reports none, so a disk that is full at that moment says it."""
    if isinstance(error, OSError) and error.errno is not None:
        if error.filename is None or ".tmp" in Path(str(error.filename)).name:
            error.filename = str(path)
        return error
    code = re.search(r"os error (\d+)", str(error))
    if code:
        return OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path))
    if _nearly_full(Path(path)):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return None


def _nearly_full(path: Path) -> bool:
    folder = next((p for p in (path, *path.parents) if p.is_dir()), None)
    if folder is None:
        return False
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize < NEARLY_FULL_BYTES


def reraise(error: BaseException, path: Path, cleanup: Callable[[], None] = lambda: None):
    """Raise the filesystem's error behind ``error`` (chained to it), else ``error`` itself, after
    ``cleanup`` (which may free space: it runs once the disk was looked at)."""
    found = filesystem_error(error, path)
    cleanup()
    if found is None or found is error:
        raise error
    raise found from error


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
    except Exception as error:  # noqa: BLE001 - the filesystem's refusal, whichever library wrote
        reraise(error, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def fsync_tree(path: Path) -> None:
    """Every file under ``path`` and every folder, flushed to disk."""
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        descriptor = os.open(root, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def atomic_directory(path: Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` fills a temporary folder next to ``path``, which then replaces ``path`` (an
    earlier ``path`` is removed only once the new folder is complete on disk)."""
    path = Path(path)
    tmp, old = path.with_name(f".{path.name}.tmp{os.getpid()}"), path.with_name(f".{path.name}.old{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        fsync_tree(tmp)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    except Exception as error:  # noqa: BLE001 - as atomic_write
        if old.exists() and not path.exists():
            os.replace(old, path)
        reraise(error, path, lambda: shutil.rmtree(tmp, ignore_errors=True))
    shutil.rmtree(old, ignore_errors=True)
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
