"""Fashion-MNIST (Zalando, MIT licence): 28x28 grayscale pictures of clothes.

``make data`` (``python -m dcvq.data.prepare fashion_mnist``) copies the four idx files
of Debian's ``dataset-fashion-mnist`` to ``<data dir>/fashion_mnist/``; nothing is
downloaded here. Splits: ``test`` is the official 10,000-image test set; the official
60,000 training images are carved (:func:`carve`) into ``train`` (55,000) and ``val``
(5,000), so settings are chosen on images that never judge them.

Each image is padded with the background value (-1: black) to ``resolution`` x
``resolution`` and replicated to 3 channels. Training items flip horizontally when
``flip`` is set (drawn from the ``(i, seed)`` key); val and test are fixed. Names are
``fashion_mnist/<split>/<index in its official file>``: each image is its own source.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dcvq.data.base import split_key
from dcvq.data.store import data_dir, missing_data

SPLITS = ("train", "val", "test")
PACKAGE = "dataset-fashion-mnist"
PACKAGE_DIR = "usr/share/datasets/fashion-mnist"  # where the package has the files
DOWNLOAD = "31 MB"
# sha256sum of the files of dataset-fashion-mnist 0.0~git20200523.55506a9-1 (Debian 12)
SHA256SUMS = """
b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7  train-images-idx3-ubyte.gz
0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056  train-labels-idx1-ubyte.gz
cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa  t10k-images-idx3-ubyte.gz
8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05  t10k-labels-idx1-ubyte.gz
"""
CHECKSUMS = {name: sha for sha, name in map(str.split, SHA256SUMS.strip().splitlines())}
FILES = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}
SIZE = 28
# the val split: 1 official training image in 12 (60,000 -> 5,000), chosen by VAL_SEED
VAL_EVERY = 12
VAL_SEED = 0


def carve(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of an ``n``-image official training set, each sorted: val is
    the first ``n // 12`` of ``numpy.random.RandomState(0).permutation(n)``, train the rest.
    RandomState, not default_rng: NumPy keeps its streams fixed across versions (NEP 19)."""
    perm = np.random.RandomState(VAL_SEED).permutation(n)
    n_val = n // VAL_EVERY
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def missing(path: Path, problem: str) -> FileNotFoundError:
    return missing_data("fashion_mnist", path, problem, [PACKAGE], DOWNLOAD)


def read_images(path: Path) -> np.ndarray:
    """An idx3 file (gzip, big-endian header: magic 2051, count, rows, cols) -> uint8 N x H x W."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = struct.unpack(">IIII", data[:16]) if len(data) >= 16 else (0,) * 4
    if magic != 2051 or len(data) != 16 + n * rows * cols:
        raise missing(path.parent, f"{path.name} is not an idx3 image file")
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols)


class FashionMNIST(Dataset):
    """One split of Fashion-MNIST: ``train`` (55,000) | ``val`` (5,000) | ``test`` (10,000)."""

    def __init__(
        self,
        split: str = "train",
        resolution: int = 32,
        root: str | os.PathLike | None = None,
        flip: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"dataset.split={split!r}: the fashion_mnist dataset has {SPLITS}")
        if int(resolution) < SIZE:
            raise ValueError(
                f"dataset.resolution={resolution}: Fashion-MNIST images are {SIZE}x{SIZE} and "
                f"are padded, never shrunk: use {SIZE} or more (32 by default)"
            )
        self.split, self.resolution, self.flip = split, int(resolution), bool(flip)
        top = data_dir(root)
        self.root = top if (top / FILES["test"]).is_file() else top / "fashion_mnist"
        path = self.root / FILES["test" if split == "test" else "train"]
        if not path.is_file():
            raise missing(self.root, f"{path.name} is missing")
        images = read_images(path)
        if split == "test":
            self.index = np.arange(len(images))
        else:
            self.index = carve(len(images))[0 if split == "train" else 1]
        # uint8 in memory (43 MB for train): converted per item
        self.images = torch.from_numpy(images[self.index])

    def __len__(self) -> int:
        return len(self.index)

    def info(self) -> dict[str, Any]:
        """What a results file should say about the data."""
        return {
            "dataset": type(self).__name__,
            "split": self.split,
            "n_images": len(self),
            "resolution": self.resolution,
            "flip": self.flip,
            "root": str(self.root),
        }

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, str]:
        i, seed = split_key(key)
        image = self.images[i].float().div(127.5).sub(1.0)
        if self.split == "train" and self.flip:
            g = torch.Generator().manual_seed(seed)
            if bool(torch.rand((), generator=g) < 0.5):
                image = image.flip(1)
        r, h, w = self.resolution, image.shape[0], image.shape[1]
        out = torch.full((r, r), -1.0)
        top, left = (r - h) // 2, (r - w) // 2
        out[top : top + h, left : left + w] = image
        return out.expand(3, r, r).contiguous(), f"fashion_mnist/{self.split}/{self.index[i]}"
