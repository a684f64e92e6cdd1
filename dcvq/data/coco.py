"""MS-COCO images: the 2014 or the 2017 release, flat folders of ``.jpg`` files.

Accepted split folders (``root`` is the COCO folder or the folder holding it as ``coco/``
or ``COCO/``; ``images/`` in between is accepted too):

- 2014: ``train2014/`` (82,783), ``val2014/`` (40,504), ``test2014/``;
- 2017: ``train2017/`` (118,287), ``val2017/`` (5,000), ``test2017/``;
- VQCT's doubly nested copy, ``train2014/train2014/``, ``val2014/val2014/`` (used when
  the inner folder exists).

``year=None`` picks 2014 when its split folder exists (VQCT's protocol, the source of the
paper's baselines, uses COCO 2014), else 2017. The protocol: ``policy="center_crop"``
(resize shorter side to 256, centre crop), which is the default for non-train splits.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from dcvq.data.base import ListedImages
from dcvq.data.index import Listing, cached_files, is_image, layout_error
from dcvq.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
YEARS = (2014, 2017)


def split_folder(root: Path, split: str, year: int) -> Path | None:
    """The folder holding ``{split}{year}`` images under ``root``, or None (stats only)."""
    name = f"{split}{year}"
    for top in (root, root / "images", root / "coco", root / "COCO", root / "coco" / "images"):
        d = top / name
        if d.is_dir():
            nested = d / name
            return nested if nested.is_dir() else d
    return None


def dataset_top(folder: Path, split: str, year: int) -> Path:
    """The COCO folder itself: image names are ``val2014/COCO_val2014_*.jpg`` etc."""
    name = f"{split}{year}"
    top = folder.parent
    if top.name == name:  # nested copy
        top = top.parent
    return top.parent if top.name == "images" else top


class COCO(ListedImages):
    """COCO images (no annotations). ``split``: ``train`` | ``val`` | ``test``;
    ``year``: 2014 | 2017 | None (detect, 2014 first)."""

    NAME, ENV, SPLITS = "COCO", "DCVQ_COCO_ROOT", SPLITS

    def list_files(
        self, root: Path, split: str, cache_dir: str | os.PathLike | None, year: int | None = None
    ) -> tuple[list[str], Path, str]:
        if year is not None and int(year) not in YEARS:
            raise ConfigError(f"dataset.year={year!r}: COCO years are {YEARS}")
        years = YEARS if year is None else (int(year),)
        found = {y: split_folder(root, split, y) for y in years}
        found = {y: d for y, d in found.items() if d is not None}
        if not found:
            expected = [
                f"{split}{y}/*.jpg (or {split}{y}/{split}{y}/*.jpg, VQCT's nested copy)"
                for y in years
            ]
            raise layout_error("COCO", root, expected)
        self.year = year = min(found)  # 2014 first: the protocol of the paper's baselines
        if len(found) > 1:
            log.info("COCO: both %s%d and %s2017 found; using %d", split, year, split, year)
        folder = found[year]
        top = dataset_top(folder, split, year)
        layout = f"coco{year}" + ("-nested" if folder.parent.name == folder.name else "")

        def build(listing: Listing) -> None:
            listing.scan(folder, keep=is_image, max_depth=0)

        key = {"dataset": "coco", "split": split, "layout": layout}
        files = cached_files(key, top, build, cache_dir)
        if not files:
            raise layout_error("COCO", root, [f"{folder}/*.jpg"], f"{folder} has no images.")
        return files, top, layout
