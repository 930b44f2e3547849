"""The training order, replayable and resumable without replay.

The order is exactly what ``DataLoader(dataset, shuffle=True, generator=torch.Generator().manual_seed(seed))``
draws (torch's RandomSampler): per epoch, the DataLoader's iterator takes a base seed from the
generator, the sampler a ``torch.randperm`` it yields, and, when exhausted, a second one for its
(empty) remainder. A resumed run starts at its position (epoch, offset) by making only those draws
for the epochs before it: no sample is loaded or decoded to get there.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler


class ResumableSampler(Sampler[int]):
    def __init__(self, size: int, generator: torch.Generator, epoch: int = 0, offset: int = 0):
        """``generator``: the DataLoader's own; ``epoch``, ``offset``: where the first iteration starts."""
        self.size, self.generator, self.epoch, self.offset = size, generator, epoch, offset

    def __iter__(self):
        for _ in range(self.epoch):  # what each earlier epoch drew: the loader's base seed, two permutations
            torch.empty((), dtype=torch.int64).random_(generator=self.generator)
            torch.randperm(self.size, generator=self.generator)
            torch.randperm(self.size, generator=self.generator)
        offset, self.epoch, self.offset = self.offset, 0, 0  # later epochs start at their beginning
        yield from torch.randperm(self.size, generator=self.generator).tolist()[offset:]
        torch.randperm(self.size, generator=self.generator)  # RandomSampler's remainder draw

    def __len__(self) -> int:
        return self.size


def loader(dataset, batch_size: int, seed: int, batches_done: int = 0, batches_per_epoch: int | None = None,
           stride: int = 1, num_workers: int = 0) -> DataLoader:
    """A shuffled, drop-last DataLoader whose first epoch starts ``batches_done`` batches in (each of
    ``stride`` processes' batches: a global batch is ``stride`` loader batches)."""
    generator = torch.Generator().manual_seed(seed)
    epoch, batch = divmod(batches_done, batches_per_epoch) if batches_per_epoch else (0, 0)
    sampler = ResumableSampler(len(dataset), generator, epoch, batch * batch_size * stride)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=num_workers,
                      generator=generator)
