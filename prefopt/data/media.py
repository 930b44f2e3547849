"""Reading pictures and videos from files: RGB frames (H, W, 3) uint8, or one ValueError line."""

from __future__ import annotations

from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def read_frames(path: Path) -> list[np.ndarray]:
    """The frames of a video file (OpenCV), or a one-frame list of an image file (Pillow)."""
    if is_video(path):
        import cv2

        capture, frames = cv2.VideoCapture(str(path)), []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        capture.release()
        if not frames:
            raise ValueError("not a readable video")
        return frames
    return [read_image(path)]


def read_image(source) -> np.ndarray:
    """An image file (a path, or a file object such as ``io.BytesIO(bytes)``) as RGB (H, W, 3) uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as image:
            image.load()
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise ValueError(f"not a readable image ({type(error).__name__})") from None
