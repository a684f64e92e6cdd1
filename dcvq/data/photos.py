"""Photos: 51 freely licensed photographs in train / val / test splits, for fair ablations.

scikit-image's 9 photos plus photographs that Debian packages ship as wallpapers (and
palapeli's puzzles), listed with licence, author and checksum in ``photos.csv``. The split
is by photo (a stereo pair counts as one photo): ``val`` chooses settings, ``test`` judges
them. It was assigned once, per source, in order of sha256(name): positions 0, 6, 12, ...
test, 3, 9, 15, ... val, the rest train; chelsea and coffee, the old study's held-out
photos on which its settings were chosen, are val.

``make data`` (``python -m dcvq.data.prepare photos``) writes every photo, resized once to
256x256 (shorter side, Lanczos, centre crop), to ``<data dir>/photos/<split>/<name>.png``
and ``prepared.json`` beside them; nothing is downloaded here. Training items are random
crops (with flips) drawn from the ``(i, seed)`` keys exactly as
:class:`~dcvq.data.samples.SampleImages` draws them; ``val`` and ``test`` are the fixed
grid of non-overlapping tiles of each of their photos.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dcvq.data.base import load_rgb
from dcvq.data.crops import PhotoCrops
from dcvq.data.store import data_dir, missing_data

SPLITS = ("train", "val", "test")
MANIFEST = Path(__file__).with_name("photos.csv")
SIZE = 256  # the prepared photos are SIZE x SIZE
MIN_RESOLUTION = 32
RECORD = "prepared.json"
DOWNLOAD = "about 170 MB"  # the Debian packages of the manifest


@dataclass(frozen=True)
class Photo:
    """One row of ``photos.csv``. ``source``: ``skimage`` or ``<Debian package>=<version>``
    (the version the manifest was made from); ``file``: the path inside that package."""

    name: str
    source: str
    file: str
    license: str
    author: str
    split: str
    sha256: str

    @property
    def package(self) -> str | None:
        """The Debian package, or None for scikit-image's photos."""
        return None if self.source == "skimage" else self.source.split("=", 1)[0]


def read_manifest() -> list[Photo]:
    with open(MANIFEST, newline="", encoding="utf-8") as f:
        return [Photo(**row) for row in csv.DictReader(f)]


def packages(photos: list[Photo]) -> list[str]:
    """The Debian packages ``photos`` come from."""
    return sorted({p.package for p in photos if p.package})


def record(photos: list[Photo]) -> dict[str, Any]:
    """``prepared.json`` once ``photos`` are prepared: what decides each PNG (its source's
    checksum, the size) and where it is (its split); licences and authors are not in it."""
    return {
        "size": SIZE,
        "photos": {p.name: {"split": p.split, "sha256": p.sha256} for p in photos},
    }


def find_prepared(root: str | os.PathLike | None) -> Path:
    """The prepared ``photos`` folder: ``root`` (the data dir, or its ``photos/``), else
    ``$DCVQ_DATA/photos``, else ``~/.cache/dcvq/data/photos``."""
    top = data_dir(root)
    return top if (top / RECORD).is_file() else top / "photos"


class Photos(PhotoCrops):
    """The prepared photos of one split: ``train`` | ``val`` | ``test``.

    ``train`` has ``samples_per_epoch`` virtual items (random ``resolution`` crops);
    ``val``/``test`` one item per non-overlapping ``resolution`` tile, named
    ``<photo>@<top>,<left>``.
    """

    def __init__(
        self,
        split: str = "train",
        resolution: int = 256,
        root: str | os.PathLike | None = None,
        samples_per_epoch: int = 1000,
        flip: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"dataset.split={split!r}: the photos dataset has {SPLITS}")
        if not MIN_RESOLUTION <= int(resolution) <= SIZE:
            raise ValueError(
                f"dataset.resolution={resolution}: the photos are {SIZE}x{SIZE}; "
                f"use {MIN_RESOLUTION} to {SIZE}"
            )
        self.root = find_prepared(root)
        photos = self._load(split)
        super().__init__(photos, split, resolution, split == "train", samples_per_epoch, flip)

    def _load(self, split: str) -> list[tuple[str, Tensor]]:
        """The split's photos, decoded once (192 KiB each), in order of name."""
        manifest = read_manifest()

        def missing(problem: str) -> FileNotFoundError:
            return missing_data("photos", self.root, problem, packages(manifest), DOWNLOAD)

        try:
            prepared = json.loads((self.root / RECORD).read_text())
        except FileNotFoundError:
            raise missing("the photos are not prepared") from None
        except ValueError:
            raise missing(f"{RECORD} is unreadable") from None
        if prepared != record(manifest):
            raise missing("the photos were prepared from another version of photos.csv")
        names = sorted(p.name for p in manifest if p.split == split)
        paths = {name: self.root / split / f"{name}.png" for name in names}
        absent = [name for name, path in paths.items() if not path.is_file()]
        if absent:
            n = f"{len(absent)} of the {len(names)} {split} photos"
            raise missing(f"{n} are missing: {absent[:5]}")
        return [(n, torch.from_numpy(np.asarray(load_rgb(p)).copy())) for n, p in paths.items()]

    def info(self) -> dict[str, Any]:
        return super().info() | {"root": str(self.root)}
