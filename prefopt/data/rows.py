"""One row of preference data, read and checked: its media decoded at the training size, its
prompt and rewards; a problem is a ValueError whose message is one line.

Two schemas (after ``data.columns`` renamed a source's columns):

    winner, loser, prompt, reward_w, reward_l     a manifest: paths relative to it (JSONL) or bytes
    jpg_0, jpg_1 (or image_0, image_1), label_0, caption     Pick-a-Pic: label_0 1 prefers image 0,
                                                   0 image 1, 0.5 a tie (dropped, as Diffusion-DPO
                                                   drops ties); label_1, when present, = 1 - label_0
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from prefopt.data.media import VIDEO_SUFFIXES, is_video, read_frames, read_image


class Tie(Exception):
    """A comparison without a winner: dropped and counted."""


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


def _label(row: dict) -> float:
    label = row.get("label_0")
    if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label) or not 0 <= label <= 1:
        raise ValueError(f"label_0 is {label!r}, not a number in [0, 1]")
    other = row.get("label_1")
    if other is not None and abs(float(other) + float(label) - 1) > 1e-6:
        raise ValueError(f"label_1 {other} is not 1 - label_0 ({label})")
    return float(label)


def _media(value, root: Path, name: str):
    """A path (relative to ``root``) or encoded bytes."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, dict) and isinstance(value.get("bytes"), bytes | bytearray):  # datasets' Image feature
        return bytes(value["bytes"])
    if isinstance(value, str):
        path = root / value
        if not path.is_file():
            raise ValueError(f"{name} {path}: no such file")
        return path
    raise ValueError(f"no {name!r} path or bytes")


def interpret(row: dict, root: Path, paired: bool) -> dict:
    """``{"winner", ["loser",] "prompt", "reward_w", "reward_l", "flipped"}``, media as paths or
    bytes; raises ValueError (a problem) or Tie."""
    if "_error" in row:
        raise ValueError(row["_error"])
    if "label_0" in row or "jpg_0" in row or "image_0" in row:
        label = _label(row)
        if label == 0.5:
            raise Tie
        first = 0 if label > 0.5 else 1
        row = {"winner": row.get(f"jpg_{first}", row.get(f"image_{first}")),
               "loser": row.get(f"jpg_{1 - first}", row.get(f"image_{1 - first}")),
               "prompt": row.get("caption") if isinstance(row.get("caption"), str) else "", "flipped": first == 1}
    keys = ["winner", "loser"] if paired else ["winner"]
    for key in keys:
        if row.get(key) is None:
            need = " (the objective is paired)" if key == "loser" else ""
            raise ValueError(f"no {key!r} path{need}")
    prompt = row.get("prompt", "")
    if not isinstance(prompt, str):
        raise ValueError(f"prompt is {prompt!r}, not a string")
    # "image": image-to-video's reference image, the one the pair's clips were made from (optional)
    example = {key: _media(row[key], root, key) for key in [*keys, "image"] if row.get(key) is not None}
    if paired:
        reward_w, reward_l = _reward(row, "reward_w"), _reward(row, "reward_l")
        if (reward_w is None) != (reward_l is None):
            raise ValueError("reward_w and reward_l come together (got only one)")
        if reward_w is not None and reward_w <= reward_l:
            raise ValueError(f"reward_w {reward_w} <= reward_l {reward_l}")
        example.update(reward_w=reward_w, reward_l=reward_l)
    return {**example, "prompt": prompt, "flipped": bool(row.get("flipped", False))}


def _frames(media) -> tuple[list, bool]:
    """(RGB frames, is a video) of a path or of image bytes."""
    if isinstance(media, Path):
        return read_frames(media), is_video(media)
    return [read_image(io.BytesIO(media))], False


def decode(media, size: int, num_frames: int | None, name: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(tensor (3, H, W) or (3, T, H, W) in [-1, 1] at ``size``, original (frames,) + (height, width))."""
    import cv2
    import numpy as np

    try:
        frames, video = _frames(media)
    except ValueError as error:
        raise ValueError(f"{name} {media if isinstance(media, Path) else '(bytes)'}: {error}") from None
    resized = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    if video:
        original, array = (len(frames), *frames[0].shape[:2]), resized.transpose(3, 0, 1, 2)  # (3, T, H, W)
    else:
        original, array = frames[0].shape[:2], resized[0].transpose(2, 0, 1)
    if num_frames is not None and (len(frames) if video else None) != num_frames:
        raise ValueError(f"{name} {media if isinstance(media, Path) else '(bytes)'} has "
                         f"{len(frames) if video else 'no'} frames, data.num_frames={num_frames}")
    return torch.from_numpy(np.ascontiguousarray(array)).float() / 127.5 - 1, tuple(original)


def decode_example(example: dict, size: int, num_frames: int | None) -> dict:
    """The example with its media decoded; a pair's members checked against each other."""
    keys = [k for k in ("winner", "loser") if k in example]
    decoded, originals = {}, {}
    for key in keys:
        decoded[key], originals[key] = decode(example[key], size, num_frames, key)
    if "image" in example:
        image = decode(example["image"], size, None, "image")[0]
        decoded["image"] = image[:, 0] if image.dim() == 4 else image  # a clip given as the reference: its first frame
    if "loser" in decoded:
        same_path = isinstance(example["winner"], Path) and example["winner"].resolve() == example["loser"].resolve()
        if same_path or torch.equal(decoded["winner"], decoded["loser"]):
            raise ValueError("winner and loser are the same image")
        if originals["winner"] != originals["loser"]:
            raise ValueError(f"winner is {'x'.join(map(str, originals['winner']))} but loser is "
                             f"{'x'.join(map(str, originals['loser']))}")
    return {**example, **decoded}


__all__ = ["Tie", "VIDEO_SUFFIXES", "decode", "decode_example", "interpret"]
