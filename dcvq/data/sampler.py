"""A resumable, DDP-aware sampler over an endless stream of global batches.

Global position ``p`` (0, 1, 2, ... over the whole run) maps to sample
``perm_epoch[p % n]`` with ``epoch = p // n`` and a per-sample augmentation seed derived
from ``(seed, p)``. Step ``s`` on rank ``r`` of ``W`` reads positions
``s*B + r*b ... s*B + (r+1)*b - 1`` with ``B = b*W``. Hence:
- resuming at step ``s`` reproduces the exact data order and crops;
- W ranks with batch b see the same global batches and crops as 1 rank with batch W*b.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: decorrelates consecutive seeds


def sample_seed(seed: int, position: int) -> int:
    return (seed * 1_000_003 + position * _MIX) % (2**63 - 1)


class StepSampler(Sampler):
    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if n <= 0:
            raise ValueError("the training split is empty: no images to sample from")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_step, self.rank, self.world_size = start_step, rank, world_size
        self.shuffle = shuffle
        self._perm_epoch, self._perm = -1, None

    def _index(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if not self.shuffle:
            return offset
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g), epoch
        return int(self._perm[offset])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        global_batch = self.batch_size * self.world_size
        step = self.start_step
        while True:
            first = step * global_batch + self.rank * self.batch_size
            for p in range(first, first + self.batch_size):
                yield self._index(p), sample_seed(self.seed, p)
            step += 1
