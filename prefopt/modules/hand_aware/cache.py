"""Hand masks computed once per content: keyed by the SHA-256 of the file's bytes (or of an image
array's) and the masker's settings, stored as 8-bit ``.npz`` files, written atomically.

Masks of files live beside the data (``<file's folder>/.hand_masks/``) unless a cache folder is
given; masks of in-memory images live under ``$PREFOPT_CACHE/hand_masks``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from prefopt.data.media import is_video, read_frames
from prefopt.errors import ConfigError
from prefopt.io import atomic_write
from prefopt.modules.hand_aware.masker import HandMasker

CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def settings_key(masker: HandMasker) -> str:
    options = ",".join(f"{k}={v}" for k, v in sorted(masker.options.items()))
    return hashlib.sha256(f"margin={masker.margin},feather={masker.feather},{options}".encode()).hexdigest()[:12]


def cached(directory: Path, digest: str, masker: HandMasker, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The mask stored under ``directory`` for (content ``digest``, masker settings), computed once."""
    path = directory / f"{digest}-{settings_key(masker)}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return stored["mask"].astype(np.float32) / 255.0
    mask = compute()
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, mask=np.round(mask * 255.0).astype(np.uint8)))
    return np.round(mask * 255.0) / 255.0  # what a later read returns


def mask_of_file(path: str | Path, masker: HandMasker, cache_dir: str | Path | None = None) -> np.ndarray:
    """(H, W) mask of an image file, or (T, H, W) of a video file (tracking mode), cached."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    directory = Path(cache_dir) if cache_dir is not None else path.parent / ".hand_masks"

    def compute() -> np.ndarray:
        try:
            frames = read_frames(path)
        except ValueError as error:
            raise ConfigError(f"{path}: {error}") from None
        return masker.video(frames)[0] if is_video(path) else masker(frames[0])

    return cached(directory, file_digest(path), masker, compute)


def mask_of_image(image: np.ndarray, masker: HandMasker, cache_dir: str | Path) -> np.ndarray:
    """(H, W) mask of an in-memory RGB image (H, W, 3) uint8, cached by its bytes."""
    image = np.ascontiguousarray(image)
    digest = hashlib.sha256(image.tobytes() + str(image.shape).encode()).hexdigest()
    return cached(Path(cache_dir), digest, masker, lambda: masker(image))
