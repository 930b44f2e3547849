"""A user's own data builder (``data.builder=user_data.in_memory``), for tests: the manifest at
``$PREFOPT_TEST_MANIFEST`` decoded here, independently of prefopt, and held in memory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def decoded(path: Path, size: int) -> torch.Tensor:
    """The training tensor of an image, written out here: area-resized RGB in [-1, 1], (3, H, W)."""
    import cv2

    array = cv2.resize(np.asarray(Image.open(path).convert("RGB")), (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(array.transpose(2, 0, 1).copy()).float() / 127.5 - 1


def decoded_clip(path: Path, size: int, frames: int) -> torch.Tensor:
    """The training tensor of a clip, written out here: its first ``frames`` frames, each area-resized
    RGB in [-1, 1], (3, T, H, W)."""
    import cv2

    capture, read = cv2.VideoCapture(str(path)), []
    while len(read) < frames:
        ok, frame = capture.read()
        assert ok, f"{path} has fewer than {frames} frames"
        read.append(cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (size, size), interpolation=cv2.INTER_AREA))
    capture.release()
    return torch.from_numpy(np.stack(read).transpose(3, 0, 1, 2).copy()).float() / 127.5 - 1


def in_memory(cfg, paired, stage=None, model=None):
    from prefopt.data import PreferenceDataset

    manifest = Path(os.environ["PREFOPT_TEST_MANIFEST"])
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    winner = torch.stack([decoded(manifest.parent / r["winner"], cfg.image_size) for r in rows])
    loser = torch.stack([decoded(manifest.parent / r["loser"], cfg.image_size) for r in rows])
    return PreferenceDataset(winner, loser, name="in memory")
