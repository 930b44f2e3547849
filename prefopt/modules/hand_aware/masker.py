"""Hand masks of real pictures: mediapipe's hand landmarks -> convex hull per hand -> dilation ->
feathering, a soft mask in [0, 1] (all zeros where no hand is found).

The models are the ones inside the mediapipe 0.10.21 wheel (the legacy ``solutions.hands`` API:
palm detector + 21-landmark model), so nothing is downloaded. Images use static mode (every image
detected from scratch); a video's frames use tracking mode (landmarks of frame t seed frame t+1).

Sizes of the dilation and feathering are fractions of each hand's size (the longer side of its
landmarks' bounding box), so a hand gets the same margin at 64 or 1024 pixels: landmarks sit on the
joints, and the skin of the fingers reaches past their hull.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_LANDMARKS = 21


@dataclass
class Hand:
    landmarks: np.ndarray  # (21, 2) pixel coordinates (x, y)
    score: float  # mediapipe's hand presence/handedness confidence in [0, 1]
    label: str  # "Left" or "Right"


def hand_size(landmarks: np.ndarray) -> float:
    """The longer side of the landmarks' bounding box, in pixels."""
    extent = landmarks.max(axis=0) - landmarks.min(axis=0)
    return float(extent.max())


def hull_mask(hands: list[np.ndarray], height: int, width: int, margin: float = 0.08,
              feather: float = 0.05) -> np.ndarray:
    """(H, W) float32 mask in [0, 1] of the given hands' landmarks ((K, 2) pixel (x, y) arrays).

    Each hand's convex hull is filled and dilated by ``margin`` x its size (every pixel within that
    Euclidean distance of the hull: an exact distance transform, as fast for any radius), and the
    union of the hands is blurred by a Gaussian of standard deviation ``feather`` x the largest
    hand's size (0: a hard 0/1 mask)."""
    import cv2

    mask = np.zeros((height, width), np.uint8)
    sizes = []
    for points in hands:
        hand = np.zeros_like(mask)
        hull = cv2.convexHull(np.round(points).astype(np.int32))
        cv2.fillConvexPoly(hand, hull, 1)
        size = hand_size(points)
        radius = round(margin * size)
        if radius > 0:
            distance = cv2.distanceTransform(1 - hand, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            hand = (distance <= radius).astype(np.uint8)
        mask |= hand
        sizes.append(size)
    soft = mask.astype(np.float32)
    if sizes and feather > 0:
        sigma = feather * max(sizes)
        soft = cv2.GaussianBlur(soft, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
    return np.clip(soft, 0.0, 1.0)


def _as_rgb(image) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {array.shape}")
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = np.clip(np.round(array * 255.0 if array.max() <= 1.0 else array), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


class HandMasker:
    """Soft hand masks of RGB images (H, W, 3) uint8 (or floats in [0, 1]) and of videos' frames."""

    def __init__(self, margin: float = 0.08, feather: float = 0.05, max_hands: int = 2,
                 min_confidence: float = 0.5, model_complexity: int = 1):
        self.margin, self.feather = margin, feather
        self.options = {"max_num_hands": max_hands, "min_detection_confidence": min_confidence,
                        "model_complexity": model_complexity}
        self._static = None

    def _hands(self, static: bool):
        import mediapipe as mp

        return mp.solutions.hands.Hands(static_image_mode=static, **self.options)

    @staticmethod
    def _read(result, height: int, width: int) -> list[Hand]:
        if not result.multi_hand_landmarks:
            return []
        hands = []
        for landmarks, handedness in zip(result.multi_hand_landmarks, result.multi_handedness, strict=True):
            points = np.array([(p.x * width, p.y * height) for p in landmarks.landmark], np.float32)
            best = handedness.classification[0]
            hands.append(Hand(landmarks=points, score=float(best.score), label=best.label))
        return hands

    def detect(self, image) -> list[Hand]:
        """The hands of one image, detected from scratch (static mode)."""
        rgb = _as_rgb(image)
        if self._static is None:
            self._static = self._hands(static=True)
        return self._read(self._static.process(rgb), *rgb.shape[:2])

    def mask(self, image, hands: list[Hand] | None = None) -> np.ndarray:
        """(H, W) float32 soft mask of one image."""
        height, width = np.asarray(image).shape[:2]
        hands = self.detect(image) if hands is None else hands
        return hull_mask([h.landmarks for h in hands], height, width, self.margin, self.feather)

    __call__ = mask

    def video(self, frames) -> tuple[np.ndarray, list[list[Hand]]]:
        """(T, H, W) masks and each frame's hands, tracking hands from frame to frame."""
        masks, found = [], []
        with self._hands(static=False) as tracker:
            for frame in frames:
                rgb = _as_rgb(frame)
                hands = self._read(tracker.process(rgb), *rgb.shape[:2])
                masks.append(self.mask(rgb, hands))
                found.append(hands)
        return np.stack(masks), found

    def close(self) -> None:
        if self._static is not None:
            self._static.close()
            self._static = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
