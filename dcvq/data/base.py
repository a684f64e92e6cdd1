"""Dataset contract shared by every image source.

``dataset[i]`` (evaluation) or ``dataset[(i, seed)]`` (training, from
:class:`~dcvq.data.sampler.StepSampler`) returns ``(image, name)`` where image is a
``3 x R x R`` float tensor in [-1, 1], or ``(None, name)`` when the file cannot be
decoded. :func:`collate` drops the failures and reports their names, so a bad file
never crashes a run and is never silently replaced by another image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image, ImageFile
from torch import Tensor
from torch.utils.data import Dataset

from dcvq.data.index import check_split, resolve_root
from dcvq.data.transforms import check_interpolation, check_policy, resize_crop, to_rgb, to_tensor
from dcvq.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class ImageBatch:
    images: Tensor
    names: list[str]
    skipped: list[str] = field(default_factory=list)

    def pin_memory(self) -> ImageBatch:
        # DataLoader(pin_memory=True) pins a custom batch only through this method.
        return ImageBatch(self.images.pin_memory(), self.names, self.skipped)


def dataset_info(dataset: Dataset) -> dict[str, Any]:
    """What a results file records about the data read: the dataset's own ``info()``
    (root, layout, split, count, transforms) or, for a dataset without one, its class
    and size."""
    info = getattr(dataset, "info", None)
    if callable(info):
        return info()
    return {"dataset": type(dataset).__name__, "n_images": len(dataset)}


def collate(items: list[tuple[Tensor | None, str]]) -> ImageBatch:
    good = [(x, n) for x, n in items if x is not None]
    skipped = [n for x, n in items if x is None]
    images = torch.stack([x for x, _ in good]) if good else torch.empty(0, 3, 1, 1)
    return ImageBatch(images, [n for _, n in good], skipped)


def split_key(key: int | tuple[int, int]) -> tuple[int, int]:
    """``i`` -> ``(i, i)``; ``(i, seed)`` -> itself."""
    return (key, key) if isinstance(key, int) else (int(key[0]), int(key[1]))


def split_defaults(split: str, policy: str | None, flip: bool | None) -> tuple[str, bool]:
    """``policy=None`` -> ``random_crop`` for ``train``, ``center_crop`` otherwise;
    ``flip=None`` -> True for ``train`` only. Explicit values are checked and kept."""
    train = split == "train"
    if policy is None:
        policy = "random_crop" if train else "center_crop"
    policy = check_policy(policy)
    return policy, train if flip is None else bool(flip)


@contextmanager
def _strict_truncation() -> Iterator[None]:
    """Decode with ``LOAD_TRUNCATED_IMAGES`` off, whatever other code set globally.

    Some training code (VQCT's loaders among them) sets it to True at import, which makes
    PIL fill the missing part of a truncated file with grey: a corrupted image would then
    be evaluated silently. Data loader workers are processes, so the toggle is local.
    """
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully to 8-bit RGB; raises on empty, truncated or corrupt files."""
    with _strict_truncation(), Image.open(path) as im:
        im.load()  # decode now: truncated files fail here, not later
        return to_rgb(im)


class ImageFiles(Dataset):
    """Images read from files, resized/cropped by a policy (see ``transforms``).

    Subclasses (one per dataset layout) only find the files and call ``__init__``; they
    also set ``split`` and ``layout`` for :meth:`info`.
    """

    split: str | None = None
    layout: str | None = None

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        resolution: int,
        policy: str,
        flip: bool = False,
        root: str | os.PathLike | None = None,
        interpolation: str = "bilinear",
    ) -> None:
        if int(resolution) <= 0:
            raise ConfigError(f"dataset.resolution={resolution} must be a positive integer")
        # plain strings: 120k pathlib objects cost seconds to build and to pickle into
        # every data loader worker; ``files`` rebuilds Paths for callers that want them
        self._paths = [os.fspath(f) for f in files]
        self.resolution, self.policy, self.flip = int(resolution), check_policy(policy), flip
        self.interpolation = check_interpolation(interpolation)
        self.root = Path(root) if root is not None else None
        self._prefix = os.path.join(os.fspath(root), "") if root is not None else None

    @property
    def files(self) -> list[Path]:
        return [Path(p) for p in self._paths]

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, i: int) -> str:
        return self._paths[i]

    def name(self, i: int) -> str:
        """The file's path relative to the dataset root (``/``-separated): stable names
        for results files, whatever machine the data sits on."""
        path = self._paths[i]
        if self._prefix is not None and path.startswith(self._prefix):
            path = path[len(self._prefix) :]
        return path.replace(os.sep, "/")

    def info(self) -> dict[str, Any]:
        """What a results file should say about the data."""
        return {
            "dataset": type(self).__name__,
            "root": str(self.root) if self.root is not None else None,
            "layout": self.layout,
            "split": self.split,
            "n_images": len(self),
            "resolution": self.resolution,
            "policy": self.policy,
            "flip": self.flip,
            "interpolation": self.interpolation,
        }

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor | None, str]:
        i, seed = split_key(key)
        path = self._paths[i]
        try:
            img = load_rgb(path)
        except Exception as e:  # PIL raises many types for bad files
            log.warning("skipping unreadable image %s (%s: %s)", path, type(e).__name__, e)
            return None, self.name(i)
        g = torch.Generator().manual_seed(seed)
        img = resize_crop(img, self.resolution, self.policy, g, self.flip, self.interpolation)
        return to_tensor(img), self.name(i)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"layout={self.layout!r}, n={len(self)}, policy={self.policy!r})"
        )


class ListedImages(ImageFiles):
    """A dataset's images found under ``dataset.root`` (else ``$ENV``): the constructor
    every file-based dataset shares. A subclass names itself (``NAME``, ``ENV``,
    ``SPLITS``) and lists a split's files in :meth:`list_files`, which receives its own
    options (``year``, ``layout``, ...) as keyword arguments.

    The split is checked, then the root; the files (cached by ``dcvq.data.index``) are
    read with the split's default policy and flip (``split_defaults``) unless given.
    """

    NAME: ClassVar[str]  # in messages: "COCO", "CUB-200-2011", ...
    ENV: ClassVar[str]  # the environment variable read when dataset.root is not set
    SPLITS: ClassVar[Collection[str]]

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        resolution: int = 256,
        policy: str | None = None,
        flip: bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        *,
        interpolation: str = "bilinear",
        **options: Any,
    ) -> None:
        check_split(self.NAME, split, self.SPLITS)
        root_path = resolve_root(root, self.ENV, self.NAME)
        files, top, layout = self.list_files(root_path, split, cache_dir, **options)
        policy, flip = split_defaults(split, policy, flip)
        super().__init__(files, resolution, policy, flip, root=top, interpolation=interpolation)
        self.split, self.layout = split, layout

    def list_files(
        self, root: Path, split: str, cache_dir: str | os.PathLike | None, **options: Any
    ) -> tuple[list[str], Path, str]:
        """``(files, top, layout)`` of ``split`` under the existing ``root``: absolute
        paths, the folder their names are relative to, and the layout found."""
        raise NotImplementedError
