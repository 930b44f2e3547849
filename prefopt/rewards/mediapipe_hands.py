"""Hand quality of real pictures, from mediapipe's hand models (the evaluation metric for real data;
SynthHands uses its own detector, prefopt/tasks/synthhands/reward.py).

Per image: ``confidence``, the best hand's mediapipe confidence (0 when no hand is found), and
``landmarks``, the number of landmarks found (21 per detected hand). ``score`` in [0, 1] is the
confidence times the share of the expected hands' landmarks found.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prefopt.modules.hand_aware.masker import NUM_LANDMARKS, HandMasker


@dataclass
class HandQuality:
    confidence: torch.Tensor  # (N,) in [0, 1]
    landmarks: torch.Tensor  # (N,) long
    score: torch.Tensor  # (N,) in [0, 1]


def hand_quality(images: torch.Tensor, expected_hands: int = 1, masker: HandMasker | None = None) -> HandQuality:
    """Images (N, 3, H, W) in [-1, 1] (RGB)."""
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    own = masker is None
    masker = masker or HandMasker()
    try:
        found = [masker.detect(image) for image in pixels]
    finally:
        if own:
            masker.close()
    confidence = torch.tensor([max((h.score for h in hands), default=0.0) for hands in found])
    landmarks = torch.tensor([NUM_LANDMARKS * len(hands) for hands in found])
    share = (landmarks.float() / (NUM_LANDMARKS * expected_hands)).clamp(max=1)
    return HandQuality(confidence=confidence, landmarks=landmarks, score=confidence * share)
