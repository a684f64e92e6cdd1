"""The embedded default data: crops of the photos scikit-image ships in its wheel.

No download: these files are inside the installed package. The split is by photo
(held-out photos never appear in training). Training samples are random crops (with
flips) at native scale; the validation split is a fixed grid of crops.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dcvq.data.base import split_key

TRAIN_PHOTOS = (
    "astronaut",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
)
VAL_PHOTOS = ("chelsea", "coffee")
SPLITS = ("train", "val")


def load_photo(name: str) -> np.ndarray:
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        return left if name.endswith("left") else right
    return getattr(data, name)()


class SampleImages(Dataset):
    """Crops of scikit-image's bundled photos; ``split`` is ``train`` or ``val``.

    ``train`` has ``samples_per_epoch`` virtual items (random crops); ``val`` has one
    item per non-overlapping ``resolution``-sized tile of the held-out photos.
    """

    def __init__(
        self,
        split: str = "train",
        resolution: int = 256,
        samples_per_epoch: int = 1000,
        flip: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"dataset.split={split!r}: the samples dataset has {SPLITS}")
        self.split, self.resolution, self.flip = split, resolution, flip
        names = TRAIN_PHOTOS if split == "train" else VAL_PHOTOS
        photos = {n: torch.from_numpy(np.ascontiguousarray(load_photo(n))) for n in names}
        too_small = [n for n, p in photos.items() if min(p.shape[:2]) < resolution]
        if too_small:
            raise ValueError(
                f"dataset.resolution={resolution} is larger than the samples photos "
                f"{too_small}; use at most {min(min(p.shape[:2]) for p in photos.values())}"
            )
        self.photos = list(photos.items())
        if split == "train":
            self.length = samples_per_epoch
        else:
            self.tiles = [
                (k, top, left)
                for k, (_, p) in enumerate(self.photos)
                for top in range(0, p.shape[0] - resolution + 1, resolution)
                for left in range(0, p.shape[1] - resolution + 1, resolution)
            ]
            self.length = len(self.tiles)

    def __len__(self) -> int:
        return self.length

    def info(self) -> dict[str, Any]:
        """What a results file should say about the data."""
        photos = [name for name, _ in self.photos]
        return {"dataset": type(self).__name__, "split": self.split, "n_images": len(self),
                "resolution": self.resolution, "photos": photos}  # fmt: skip

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, str]:
        i, seed = split_key(key)
        r = self.resolution
        if self.split == "train":
            g = torch.Generator().manual_seed(seed)
            k = i % len(self.photos)
            name, photo = self.photos[k]
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
