"""Crops of photographs held in memory, the items of the photo datasets (``samples``,
``photos``): random crops (with flips) for training, a fixed grid of tiles to evaluate.

Training items come from ``(i, seed)`` keys (:class:`~dcvq.data.StepSampler`): item ``i``
is a crop of photo ``i % n_photos`` at a position (and flip) drawn from ``seed``, so a
resumed run draws the same crops. Evaluation items are every non-overlapping
``resolution`` tile of every photo, named ``<photo>@<top>,<left>``: the report groups
tiles by their photo (the part before ``@``) for its intervals.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from dcvq.data.base import split_key


class PhotoCrops(Dataset):
    """``photos``: ``(name, H x W x 3 uint8 tensor)`` pairs; ``training``: random crops
    (``samples_per_epoch`` virtual items), else the grid of tiles."""

    def __init__(
        self,
        photos: list[tuple[str, Tensor]],
        split: str,
        resolution: int,
        training: bool,
        samples_per_epoch: int = 1000,
        flip: bool = True,
    ) -> None:
        too_small = [n for n, p in photos if min(p.shape[:2]) < resolution]
        if too_small:
            smallest = min(min(p.shape[:2]) for _, p in photos)
            raise ValueError(
                f"dataset.resolution={resolution} is larger than the photos {too_small}; "
                f"use at most {smallest}"
            )
        if training and int(samples_per_epoch) < 1:
            raise ValueError(f"dataset.samples_per_epoch={samples_per_epoch}: must be >= 1")
        self.photos, self.split, self.resolution = photos, split, int(resolution)
        self.training, self.flip = training, bool(flip)
        r = self.resolution
        self.tiles = [] if training else [
            (k, top, left)
            for k, (_, p) in enumerate(photos)
            for top in range(0, p.shape[0] - r + 1, r)
            for left in range(0, p.shape[1] - r + 1, r)
        ]  # fmt: skip
        self.length = int(samples_per_epoch) if training else len(self.tiles)

    def __len__(self) -> int:
        return self.length

    def info(self) -> dict[str, Any]:
        """What a results file should say about the data."""
        return {
            "dataset": type(self).__name__,
            "split": self.split,
            "n_images": len(self),
            "resolution": self.resolution,
            "photos": [name for name, _ in self.photos],
        }

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, str]:
        i, seed = split_key(key)
        r = self.resolution
        if self.training:
            g = torch.Generator().manual_seed(seed)
            name, photo = self.photos[i % len(self.photos)]
            top = int(torch.randint(0, photo.shape[0] - r + 1, (1,), generator=g))
            left = int(torch.randint(0, photo.shape[1] - r + 1, (1,), generator=g))
            crop = photo[top : top + r, left : left + r]
            if self.flip and bool(torch.rand((), generator=g) < 0.5):
                crop = crop.flip(1)
        else:
            k, top, left = self.tiles[i]
            name, photo = self.photos[k]
            crop = photo[top : top + r, left : left + r]
        image = crop.permute(2, 0, 1).float().div(127.5).sub(1.0).contiguous()
        return image, f"{name}@{top},{left}"
