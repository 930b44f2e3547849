"""Throughput of hand-mask extraction (prefopt.modules.hand_aware.HandMasker) at 512x512.
A benchmark, not a test.

    python benchmarks/hand_masks.py --frames 40 --out benchmarks/results/hand_masks.json

Frames: the committed hand picture (tests/fixtures/hand_emoji.png, one hand) shifted by a few
pixels per frame, and a blank frame (no hand: the palm detector runs, the landmark model does
not). Modes: static (every image detected from scratch: what images use) and tracking (a video's
frames, landmarks of one frame seed the next); each timed as detection alone and as the full mask
(hull, dilation, feathering). Frames per second = frames / wall time after one warm-up frame.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

from prefopt.modules.hand_aware.masker import HandMasker

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hand_emoji.png"


def frames_of_hand(count: int) -> list[np.ndarray]:
    glyph = Image.open(FIXTURE)
    canvas = Image.new("RGBA", glyph.size, (255, 255, 255, 255))
    canvas.alpha_composite(glyph)
    rgb = np.array(canvas.convert("RGB"))
    return [np.roll(rgb, 2 * (i % 16), axis=1) for i in range(count)]


def fps(run, frames: list[np.ndarray]) -> float:
    run(frames[:1])  # warm-up: the graph is built on first use
    start = time.perf_counter()
    run(frames)
    return len(frames) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    hand = frames_of_hand(args.frames)
    blank = [np.full_like(hand[0], 255) for _ in range(args.frames)]
    results = {"size": list(hand[0].shape[:2]), "frames": args.frames, "cpu_count": os.cpu_count(),
               "machine": platform.machine(), "fps": {}}
    with HandMasker() as masker:
        cases = {
            "static_detect_hand": (lambda fs: [masker.detect(f) for f in fs], hand),
            "static_mask_hand": (lambda fs: [masker(f) for f in fs], hand),
            "static_mask_blank": (lambda fs: [masker(f) for f in fs], blank),
            "tracking_mask_hand": (lambda fs: masker.video(fs), hand),
        }
        for name, (run, frames) in cases.items():
            results["fps"][name] = round(fps(run, frames), 2)
            print(f"{name:>22}: {results['fps'][name]:7.2f} frames/s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
