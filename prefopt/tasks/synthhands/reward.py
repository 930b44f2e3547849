"""SynthHands reward: a strict good-hand test and a graded reward, from the detector alone.

Strict good hand (every condition must hold):

    fingers == 5                          five runs of skin on the ring around the palm
    components == 1 and stray == 0        one 8-connected hand, no stray skin pixels anywhere
    PALM_RADIUS[0] <= palm <= PALM_RADIUS[1]
    FINGER_LENGTH[0] <= length <= FINGER_LENGTH[1]   for every finger (px from the palm centre)
    FINGER_WIDTH[0] <= width <= FINGER_WIDTH[1]      for every finger (px of ring)
    gap >= MIN_GAP                        fingers separated (px of ring between neighbours)

The ranges hold every clean render of a good hand the tests draw (see tests/rewards); they were set
from clean renders, then checked on model samples against the independent criterion of
:mod:`prefopt.tasks.synthhands.check` (README: agreement).

Graded reward in [0, 1]: 1 for a strict good hand; otherwise 0.9 times the mean of the partial
scores (finger count 1 - |k - 5| / 4, one component, no stray pixels, and the fraction of fingers
whose length, width and gap are in range), so every failing image scores below every good one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prefopt.tasks.synthhands.detect import Detection, detect
from prefopt.tasks.synthhands.render import GOOD_FINGERS

PALM_RADIUS = (1.8, 3.7)
FINGER_LENGTH = (4.0, 8.5)
FINGER_WIDTH = (0.4, 2.0)
MIN_GAP = 1.0
FAIL_SCALE = 0.9


@dataclass
class HandScore:
    good: torch.Tensor  # (N,) bool: strict good-hand test
    reward: torch.Tensor  # (N,) graded reward in [0, 1]
    detection: Detection


def _in_range(value: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return (value >= bounds[0]) & (value <= bounds[1])


def score(images: torch.Tensor) -> HandScore:
    """Score images (N, 3, H, W) in [-1, 1]: one reward-model call per image."""
    d = detect(images)
    present = d.widths > 0  # (N, R) runs that exist
    n_runs = present.sum(dim=1).clamp_min(1)
    finger_ok = (_in_range(d.lengths, FINGER_LENGTH) & _in_range(d.widths, FINGER_WIDTH)
                 & (d.gaps >= MIN_GAP)) | ~present
    fingers_in_range = ((finger_ok & present).sum(dim=1) / n_runs) * (d.fingers > 0)
    count_score = (1 - (d.fingers - GOOD_FINGERS).abs().float() / 4).clamp_min(0)
    one_component = d.components == 1
    no_stray = d.stray == 0
    good = ((d.fingers == GOOD_FINGERS) & one_component & no_stray & finger_ok.all(dim=1)
            & _in_range(d.palm_radius, PALM_RADIUS))
    partial = torch.stack([count_score, one_component.float(), no_stray.float(), fingers_in_range]).mean(dim=0)
    reward = torch.where(good, torch.ones_like(partial), FAIL_SCALE * partial)
    return HandScore(good=good, reward=reward, detection=d)
