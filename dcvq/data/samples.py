"""The embedded default data: crops of the photos scikit-image ships in its wheel.

No download: these files are inside the installed package. The split is by photo
(held-out photos never appear in training). Training samples are random crops (with
flips) at native scale; the validation split is a fixed grid of crops
(:class:`~dcvq.data.crops.PhotoCrops`). No test split: ``dataset=photos`` has one.
"""

from __future__ import annotations

import numpy as np
import torch

from dcvq.data.crops import PhotoCrops
from dcvq.errors import ConfigError

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


class SampleImages(PhotoCrops):
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
            raise ConfigError(f"dataset.split={split!r}: the samples dataset has {SPLITS}")
        names = TRAIN_PHOTOS if split == "train" else VAL_PHOTOS
        photos = [(n, torch.from_numpy(np.ascontiguousarray(load_photo(n)))) for n in names]
        super().__init__(photos, split, resolution, split == "train", samples_per_epoch, flip)
