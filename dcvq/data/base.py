"""Dataset contract shared by every image source.

``dataset[i]`` (evaluation) or ``dataset[(i, seed)]`` (training, from
:class:`~dcvq.data.sampler.StepSampler`) returns ``(image, name)`` where image is a
``3 x R x R`` float tensor in [-1, 1], or ``(None, name)`` when the file cannot be
decoded. :func:`collate` drops the failures and reports their names, so a bad file
never crashes a run and is never silently replaced by another image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from dcvq.data.transforms import resize_crop, to_rgb, to_tensor

log = logging.getLogger(__name__)


@dataclass
class ImageBatch:
    images: Tensor
    names: list[str]
    skipped: list[str] = field(default_factory=list)


def collate(items: list[tuple[Tensor | None, str]]) -> ImageBatch:
    good = [(x, n) for x, n in items if x is not None]
    skipped = [n for x, n in items if x is None]
    images = torch.stack([x for x, _ in good]) if good else torch.empty(0, 3, 1, 1)
    return ImageBatch(images, [n for _, n in good], skipped)


def split_key(key: int | tuple[int, int]) -> tuple[int, int]:
    """``i`` -> ``(i, i)``; ``(i, seed)`` -> itself."""
    return (key, key) if isinstance(key, int) else (int(key[0]), int(key[1]))


class ImageFiles(Dataset):
    """Images read from files, resized/cropped by a policy (see ``transforms``).

    Subclasses (one per dataset layout) only find the files and call ``__init__``.
    """

    def __init__(
        self,
        files: list[Path],
        resolution: int,
        policy: str,
        flip: bool = False,
        root: Path | None = None,
    ) -> None:
        self.files = list(files)
        self.resolution, self.policy, self.flip = resolution, policy, flip
        self.root = root

    def __len__(self) -> int:
        return len(self.files)

    def name(self, i: int) -> str:
        path = self.files[i]
        return str(path.relative_to(self.root)) if self.root else str(path)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor | None, str]:
        i, seed = split_key(key)
        path = self.files[i]
        try:
            with Image.open(path) as im:
                im.load()  # decode now: truncated files fail here, not later
                img = to_rgb(im)
        except Exception as e:  # PIL raises many types for bad files
            log.warning("skipping unreadable image %s (%s)", path, e)
            return None, self.name(i)
        g = torch.Generator().manual_seed(seed)
        img = resize_crop(img, self.resolution, self.policy, g, self.flip)
        return to_tensor(img), self.name(i)
