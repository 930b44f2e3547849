"""The SynthHands feature network: a small CNN trained on renders, the feature space of the
distribution and diversity metrics and a judge the objectives never optimize.

    python -m prefopt.tasks.synthhands.features            # trains it and writes prefopt/assets/hand_features

Trained on fresh renders (prefopt/tasks/synthhands/render.py; half good hands, the rest k in
{3, 4, 6, 7} or five fused fingers, as the pretraining mix; a random half with Gaussian pixel noise
of standard deviation up to ``NOISE``) to predict what the renderer drew:

    finger count k in {3, ..., 7}      cross-entropy over COUNTS
    fused                              binary cross-entropy
    orientation                        (cos, sin) of the hand's angle, squared error
    skin and background colour         RGB in [-1, 1], squared error

Its ``FEATURES``-dimensional embedding (the layer before the heads), standardized by its mean and
standard deviation over renders of good hands, is what :mod:`prefopt.evaluation.distribution`
measures distances in; the colour and pose targets make the space see colour and pose, not only the
finger count. Its classifier (five fingers, not fused) is a judge beside the reward: it shares no step
with the detector (prefopt/tasks/synthhands/detect.py) nor with the template check (check.py).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from prefopt.paths import ASSETS
from prefopt.tasks.synthhands.render import BAD_FINGERS, GOOD_FINGERS, render, sample_specs

SIZE = 16
FEATURES = 32
COUNTS = (3, 4, 5, 6, 7)
NOISE = 0.1
WEIGHTS = ASSETS / "hand_features" / "model.safetensors"


class HandFeatures(nn.Module):
    """Images (N, 3, H, W) in [-1, 1] -> standardized features (N, FEATURES) (``forward``, what
    torchmetrics' FID calls) and the renderer's parameters (``predict``). Images of another size
    are resized to SIZE (bilinear, antialiased) first."""

    num_features = FEATURES  # read by torchmetrics.image.fid.FrechetInceptionDistance

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.GELU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.GELU(),  # 8 x 8
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GELU(),  # 4 x 4
            nn.Flatten(), nn.Linear(64 * 4 * 4, FEATURES))
        self.head = nn.Linear(FEATURES, len(COUNTS) + 1 + 2 + 6)  # count logits, fused logit, cos/sin, colours
        self.register_buffer("mean", torch.zeros(FEATURES))
        self.register_buffer("std", torch.ones(FEATURES))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        images = images.float()
        if images.shape[-2:] != (SIZE, SIZE):
            images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (self.embed(images) - self.mean) / self.std

    def outputs(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(F.gelu(self.embed(images)))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The renderer's parameters as the network reads them: ``fingers`` (N,) long, ``fused`` (N,)
        bool, ``angle`` (N,) radians, ``skin`` and ``background`` (N, 3)."""
        out = self.outputs(images)
        n = len(COUNTS)
        return {"fingers": torch.tensor(COUNTS)[out[:, :n].argmax(dim=1)], "fused": out[:, n] > 0,
                "angle": torch.atan2(out[:, n + 2], out[:, n + 1]), "skin": out[:, n + 3:n + 6],
                "background": out[:, n + 6:n + 9]}


def five_separated(prediction: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N,) bool: the classifier's good hand, five fingers and not fused."""
    return (prediction["fingers"] == GOOD_FINGERS) & ~prediction["fused"]


def attributes(prediction: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, 8): pose (cos, sin of the angle) and colour (skin, background RGB), the coverage space."""
    angle = prediction["angle"]
    return torch.cat([torch.stack([angle.cos(), angle.sin()], dim=1), prediction["skin"], prediction["background"]], 1)


def training_batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(images (n, 3, SIZE, SIZE), targets): half good hands, the rest bad counts or (a fifth) fused."""
    good = torch.rand(n, generator=generator) < 0.5
    fused = ~good & (torch.rand(n, generator=generator) < 0.2)
    bad = torch.tensor(BAD_FINGERS)[torch.randint(0, len(BAD_FINGERS), (n,), generator=generator)]
    fingers = torch.where(good | fused, torch.full_like(bad, GOOD_FINGERS), bad)
    spec = sample_specs(n, SIZE, fingers=fingers, fused=fused, generator=generator)
    images, _ = render(spec, SIZE)
    noisy = torch.rand(n, 1, 1, 1, generator=generator) < 0.5
    sigma = torch.rand(n, 1, 1, 1, generator=generator) * NOISE
    images = images + noisy * sigma * torch.randn(images.shape, generator=generator)
    return images, {"count": fingers - COUNTS[0], "fused": fused.float(), "pose": torch.stack([spec.angle.cos(),
                    spec.angle.sin()], 1), "colour": torch.cat([spec.skin, spec.background], 1)}


def loss(network: HandFeatures, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    out = network.outputs(images)
    n = len(COUNTS)
    return (F.cross_entropy(out[:, :n], targets["count"]) + F.binary_cross_entropy_with_logits(out[:, n], targets["fused"])
            + F.mse_loss(out[:, n + 1:n + 3], targets["pose"]) + F.mse_loss(out[:, n + 3:], targets["colour"]))


def train(steps: int = 2500, batch_size: int = 256, learning_rate: float = 2e-3, seed: int = 0) -> HandFeatures:
    """A feature network trained from ``seed`` on fresh renders (one new batch per step), its
    embedding then standardized over 8,192 renders of good hands."""
    torch.manual_seed(seed)
    network = HandFeatures()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        images, targets = training_batch(batch_size, generator)
        value = loss(network, images, targets)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        schedule.step()
    network.eval()
    with torch.no_grad():
        good, _ = render(sample_specs(8192, SIZE, generator=torch.Generator().manual_seed(seed + 1)), SIZE)
        embedding = network.embed(good)
        network.mean.copy_(embedding.mean(dim=0))
        network.std.copy_(embedding.std(dim=0).clamp_min(1e-6))
    return network


@torch.no_grad()
def accuracy(network: HandFeatures, n: int = 2000, seed: int = 1) -> dict[str, float]:
    """Per kind of render (k = 3..7 separated, five fused): the share whose count and fused flag the
    network reads right, and its mean orientation error in degrees."""
    generator = torch.Generator().manual_seed(seed)
    result = {}
    for name, fingers, fused in [*((f"k={k}", k, False) for k in COUNTS), ("fused", GOOD_FINGERS, True)]:
        spec = sample_specs(n, SIZE, fingers=torch.full((n,), fingers), fused=torch.full((n,), fused),
                            generator=generator)
        prediction = network.predict(render(spec, SIZE)[0])
        right = (prediction["fingers"] == fingers) & (prediction["fused"] == fused)
        error = torch.remainder(prediction["angle"] - spec.angle + torch.pi, 2 * torch.pi) - torch.pi
        result[name] = float(right.float().mean())
        result[f"{name} angle error"] = float(error.abs().mean().rad2deg())
    return result


@lru_cache(maxsize=1)
def load(path: Path = WEIGHTS) -> HandFeatures:
    """The shipped feature network (``prefopt/assets/hand_features``), in eval mode, no gradients."""
    from safetensors.torch import load_file

    network = HandFeatures()
    network.load_state_dict(load_file(path))
    return network.eval().requires_grad_(False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m prefopt.tasks.synthhands.features", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS, help="the safetensors file to write")
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from prefopt.io import save_tensors

    start = time.perf_counter()
    network = train(steps=args.steps, seed=args.seed)
    seconds = time.perf_counter() - start
    save_tensors(args.out, {k: v.contiguous() for k, v in network.state_dict().items()},
                 metadata={"steps": str(args.steps), "seed": str(args.seed)})
    print(f"trained {args.steps} steps in {seconds:.0f} s; accuracy on clean renders: "
          + ", ".join(f"{k} {v:.3f}" for k, v in accuracy(network).items()))
    print(f"{args.out}: sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
