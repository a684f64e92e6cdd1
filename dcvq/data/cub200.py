"""CUB-200-2011 birds, split by the dataset's own ``train_test_split.txt``.

Layout (``root`` is ``CUB_200_2011/`` or the folder holding it, as the official
``CUB_200_2011.tgz`` extracts)::

    CUB_200_2011/images.txt            <id> <class>/<file>.jpg
    CUB_200_2011/train_test_split.txt  <id> 1|0   (1 = train)
    CUB_200_2011/images/<class>/<file>.jpg

``train`` has 5,994 images, ``test`` 5,794; there is no validation split. VQCT's protocol
resizes the shorter side to 256 and centre-crops, and its CUB numbers were most likely
measured on the training images: evaluate ``split=train`` with ``policy=center_crop``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from dcvq.data.base import ListedImages
from dcvq.data.index import Listing, cached_files, is_image, layout_error

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
EXPECTED = ["CUB_200_2011/images.txt, CUB_200_2011/train_test_split.txt and CUB_200_2011/images/"]


def find_top(root: Path) -> Path | None:
    for top in (root, root / "CUB_200_2011"):
        if (top / "images.txt").is_file() and (top / "train_test_split.txt").is_file():
            return top
    return None


def _read_table(path: Path) -> dict[str, str]:
    """``<id> <value>`` lines -> ``{id: value}``; blank lines ignored, bad lines an error."""
    table: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"{path}:{n}: expected '<id> <value>', got {line!r}")
        table[parts[0]] = parts[1].strip()
    return table


class CUB200(ListedImages):
    """CUB-200-2011 images. ``split``: ``train`` (5,994) | ``test`` (5,794)."""

    NAME, ENV, SPLITS = "CUB-200-2011", "DCVQ_CUB200_ROOT", SPLITS

    def list_files(
        self, root: Path, split: str, cache_dir: str | os.PathLike | None
    ) -> tuple[list[str], Path, str]:
        top = find_top(root)
        if top is None or not (top / "images").is_dir():
            raise layout_error("CUB-200-2011", root, EXPECTED)
        wanted = "1" if split == "train" else "0"

        def build(listing: Listing) -> None:
            images_txt, split_txt = top / "images.txt", top / "train_test_split.txt"
            listing.watch(images_txt)
            listing.watch(split_txt)
            paths, flags = _read_table(images_txt), _read_table(split_txt)
            unknown = sorted(set(paths) ^ set(flags))
            if unknown:
                raise ValueError(
                    f"CUB-200-2011: images.txt and train_test_split.txt disagree on "
                    f"{len(unknown)} ids (e.g. {unknown[:5]})"
                )
            bad = sorted({v for v in flags.values()} - {"0", "1"})
            if bad:
                raise ValueError(f"CUB-200-2011: train_test_split.txt has flags {bad}, not 0/1")
            # one scandir per class folder instead of a stat per listed file
            present = Listing(top)
            present.scan(top / "images", keep=is_image, min_depth=1, max_depth=1)
            listing.watched.update(present.watched)
            on_disk = set(present.files)
            listed = sorted(f"images/{p}" for i, p in paths.items() if flags[i] == wanted)
            missing = [p for p in listed if p not in on_disk]
            if listed and len(missing) == len(listed):
                raise layout_error(
                    "CUB-200-2011",
                    root,
                    EXPECTED,
                    f"None of the {len(listed)} images listed for split={split} exist "
                    f"under {top / 'images'} (e.g. {missing[:3]}).",
                )
            if missing:
                # kept in the list: they are reported as skipped by name, never dropped
                log.warning(
                    "CUB-200-2011: %d listed %s images are missing (e.g. %s)",
                    len(missing),
                    split,
                    missing[:5],
                )
            listing.files.extend(listed)

        key = {"dataset": "cub200", "split": split, "layout": "cub200"}
        return cached_files(key, top, build, cache_dir), top, "cub200"
