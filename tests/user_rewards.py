"""A user's reward with prefopt.score's documented signature: a checksum of the 8-bit pixels on
``levels`` steps in [0, 1], so that samples of one prompt tie now and then."""

import torch


def checksum(samples: torch.Tensor, prompts: list[str], levels: int = 3) -> torch.Tensor:
    pixels = ((samples.double() + 1) * 127.5).round().flatten(1).sum(dim=1).long()
    return (pixels % levels).float() / (levels - 1)
