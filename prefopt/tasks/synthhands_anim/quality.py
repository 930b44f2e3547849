"""What the clip reward does not measure, for SynthHands Animation: the image numbers of
prefopt/tasks/synthhands/quality.py frame by frame, a temporal distance, two judges and drift.

    fd, diversity, coverage   over frames: the samples' frames against the frames of the good clips
                              their conditions ask for (renders of the reference hand)
    fd_temporal               Fréchet distance of the clips' feature differences between consecutive
                              frames, (N, (T - 1) * d), against the renders': how the hand moves
    independent_rate          frames that pass the template check (prefopt/tasks/synthhands/check.py)
    classifier_rate           frames the feature network reads as five separated fingers
    render_error              denoising error on those good clips under their condition (drift)

Both judges count frames, not clips: they read one image at a time. Both were made for still hands
with a 180-degree finger arc; on clean renders of good clips, whose arcs follow the audio (130-230
degrees), the template check passes 43.5% of frames and the classifier 71.1% (256 clips, measured
2026-12-02). Read clip models against that ceiling, not against 100%.
"""

from __future__ import annotations

import torch

from prefopt.evaluation.distribution import RESAMPLES, frechet_with_interval
from prefopt.evaluation.stats import proportion_ci
from prefopt.tasks.synthhands.quality import compare, read


def frames(clips: torch.Tensor) -> torch.Tensor:
    """(N, 3, T, H, W) -> (N * T, 3, H, W), clip by clip."""
    return clips.transpose(1, 2).flatten(0, 1)


def motion_features(features: torch.Tensor, count: int) -> torch.Tensor:
    """Per-frame features (N * T, d) of ``count`` clips -> consecutive differences (N, (T - 1) * d)."""
    per_clip = features.view(count, -1, features.shape[-1])
    return (per_clip[:, 1:] - per_clip[:, :-1]).flatten(1)


def clip_quality(clips: torch.Tensor, reference_clips: torch.Tensor, seed: int, resamples: int = RESAMPLES) -> dict:
    """The per-frame and temporal numbers of ``clips`` against ``reference_clips`` (both (N, 3, T, H, W))."""
    from prefopt.tasks.synthhands.check import independent_good

    sample_frames = frames(clips)
    features, attributes, judged = read(sample_frames)
    reference_features, reference_attributes, _ = read(frames(reference_clips))
    temporal, t_low, t_high = frechet_with_interval(motion_features(reference_features, len(reference_clips)),
                                                    motion_features(features, len(clips)), resamples, seed)
    result = compare(features, attributes, reference_features, reference_attributes, seed, resamples)
    result.update(fd_temporal=temporal, fd_temporal_ci95=[t_low, t_high])
    for name, passed in (("classifier_rate", judged), ("independent_rate", independent_good(sample_frames))):
        rate, low, high = proportion_ci(int(passed.sum()), len(passed))
        result.update({name: rate, f"{name}_ci95": [low, high]})
    return result
