"""Any folder tree of images: users' own data.

Files: every image under ``root`` (recursive; extensions in ``index.IMAGE_SUFFIXES``,
case-insensitive; hidden files and folders skipped; symlinked folders followed once).

Splits:

- when ``root`` has split folders (``train/``, ``val/`` or ``validation/``, ``test/``),
  ``split`` picks one of them (an error names those present);
- otherwise, with ``holdout=0`` (default), the whole tree is every split: ``split``
  only chooses the default resize policy (logged, since train and val then coincide);
- otherwise, with ``0 < holdout < 1``, a deterministic holdout: a file belongs to ``val``
  when the hash of its path relative to ``root`` falls in the first ``holdout`` fraction,
  else to ``train``. The assignment depends on the file's own path only, so it is the
  same on every machine and adding files never moves others between splits.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from dcvq.data.base import ListedImages
from dcvq.data.index import (
    IMAGE_SUFFIXES,
    Listing,
    cached_files,
    check_split,
    is_image,
    layout_error,
)
from dcvq.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
FOLDER_NAMES = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


def split_folders(root: Path) -> dict[str, Path]:
    found = {}
    for split, names in FOLDER_NAMES.items():
        for name in names:
            if (root / name).is_dir():
                found[split] = root / name
                break
    return found


def in_holdout(relpath: str, fraction: float) -> bool:
    """True for about ``fraction`` of all paths, decided by the path alone."""
    h = int.from_bytes(hashlib.sha1(relpath.encode("utf-8")).digest()[:8], "big")
    return h < fraction * 2**64


class ImageFolder(ListedImages):
    """Images of a folder tree. ``split``: ``train`` | ``val`` | ``test`` (see module doc);
    ``holdout``: fraction of files held out as ``val`` when there are no split folders."""

    NAME, ENV, SPLITS = "imagefolder", "DCVQ_IMAGEFOLDER_ROOT", SPLITS

    def list_files(
        self, root: Path, split: str, cache_dir: str | os.PathLike | None, holdout: float = 0.0
    ) -> tuple[list[str], Path, str]:
        self.holdout = holdout = float(holdout)
        if not 0.0 <= holdout < 1.0:
            raise ConfigError(f"dataset.holdout={holdout} must be in [0, 1)")
        folders = split_folders(root)
        if folders:
            check_split(f"imagefolder {root} (split folders)", split, folders)
            if holdout:
                log.warning("imagefolder: split folders found, dataset.holdout is ignored")
            folder, layout = folders[split], "split-folders"
        else:
            folder = root
            layout = "holdout" if holdout else "whole-tree"
            if holdout and split == "test":
                raise ConfigError(
                    f"dataset.split='test': with dataset.holdout={holdout} the imagefolder "
                    f"{root} has splits ('train', 'val')"
                )
            if not holdout:
                log.info(
                    "imagefolder: no split folders in %s: split=%s uses all images", root, split
                )

        def build(listing: Listing) -> None:
            listing.scan(folder, keep=is_image, max_depth=None)

        # one cached listing per folder; the holdout is a filter on top of it
        key = {
            "dataset": "imagefolder",
            "split": folder.name if folders else "all",
            "layout": layout if folders else "tree",
        }
        files = cached_files(key, root, build, cache_dir)
        if layout == "holdout":
            val = split == "val"
            cut = len(os.path.join(os.fspath(root), ""))
            files = [f for f in files if in_holdout(f[cut:].replace(os.sep, "/"), holdout) == val]
        if not files:
            raise layout_error(
                "imagefolder",
                root,
                [
                    f"image files ({', '.join(sorted(s[1:] for s in IMAGE_SUFFIXES))}) anywhere "
                    f"below {folder}"
                ],
                f"No images for split={split}.",
            )
        return files, root, layout
