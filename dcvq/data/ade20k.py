"""ADE20K: the SceneParsing challenge copy or the full 2021 release.

Layouts (``root`` may be the named folder or the folder holding it):

- ``challenge``: ``ADEChallengeData2016/images/{training,validation}/ADE_*.jpg``
  (20,210 / 2,000 images).
- ``full``: ``ADE20K_2021_17_01/images/ADE/{training,validation}/<category>/<scene>/*.jpg``
  (25,574 / 2,000; faces blurred). Only the ``.jpg`` files two levels below the split
  folder are images; the ``*_seg.png`` / ``*_parts_N.png`` masks, the ``.json`` files and
  the per-image folders of instance masks beside them are not. ``root`` may also be
  ``.../images`` or ``.../images/ADE`` (the root VQCT's configs use).

VQCT's protocol squashes these images to 256x256: pass ``policy="squash"``.
"""

from __future__ import annotations

import os
from pathlib import Path

from dcvq.data.base import ListedImages
from dcvq.data.index import Listing, cached_files, is_jpeg, layout_error
from dcvq.errors import ConfigError

SPLITS = {"train": "training", "val": "validation"}
LAYOUTS = ("challenge", "full")


def _is_full_image(name: str) -> bool:
    # the full release keeps only masks as .png, so *.jpg is exactly the photos
    return is_jpeg(name)


def find_layouts(root: Path) -> dict[str, Path]:
    """``{layout: base}`` for every layout found under ``root`` (stat calls only).

    ``base`` is the folder holding the split folders (``training``, ``validation``).
    """
    found: dict[str, Path] = {}
    candidates = [root / "images", root / "ADEChallengeData2016" / "images"]
    if root.name == "images":  # root given as ADEChallengeData2016/images
        candidates.append(root)
    for images in candidates:
        has_split = (images / "training").is_dir() or (images / "validation").is_dir()
        if has_split and not (images / "ADE").is_dir():
            found.setdefault("challenge", images)
    full = [
        root / "images" / "ADE",
        root / "ADE20K_2021_17_01" / "images" / "ADE",
        root / "ADE",
    ]
    if root.name == "ADE":
        full.append(root)
    for base in full:
        if (base / "training").is_dir() or (base / "validation").is_dir():
            found.setdefault("full", base)
            break
    return found


class ADE20K(ListedImages):
    """ADE20K images (no annotations). ``split``: ``train`` | ``val``.

    ``layout``: ``challenge`` | ``full`` | None (detect; an error when both are found).
    """

    NAME, ENV, SPLITS = "ADE20K", "DCVQ_ADE20K_ROOT", SPLITS

    def list_files(
        self, root: Path, split: str, cache_dir: str | os.PathLike | None, layout: str | None = None
    ) -> tuple[list[str], Path, str]:
        found = find_layouts(root)
        expected = [
            "ADEChallengeData2016/images/{training,validation}/ADE_*.jpg",
            "ADE20K_2021_17_01/images/ADE/{training,validation}/<category>/<scene>/*.jpg",
        ]
        if layout is not None:
            if layout not in LAYOUTS:
                raise ConfigError(f"dataset.layout={layout!r}: ADE20K layouts are {LAYOUTS}")
            if layout not in found:
                raise layout_error("ADE20K", root, expected, f"(dataset.layout={layout})")
        elif len(found) > 1:
            raise ConfigError(
                f"ADE20K: dataset.root={root} holds both the challenge copy "
                f"({found['challenge']}) and the full release ({found['full']}); choose one "
                f"with dataset.layout=challenge or dataset.layout=full"
            )
        elif not found:
            raise layout_error("ADE20K", root, expected)
        else:
            layout = next(iter(found))
        base = found[layout]
        split_dir = base / SPLITS[split]
        if not split_dir.is_dir():
            raise layout_error(
                "ADE20K", root, expected, f"The {layout} layout has no folder {split_dir}."
            )
        top = base.parent if layout == "challenge" else _full_top(base)

        def build(listing: Listing) -> None:
            if layout == "challenge":
                listing.scan(split_dir, keep=is_jpeg, max_depth=0)
            else:
                # <category>/<scene>/<file>.jpg: exactly two levels down, never into the
                # per-image folders of instance masks one level further
                listing.scan(split_dir, keep=_is_full_image, min_depth=2, max_depth=2)

        key = {"dataset": "ade20k", "split": split, "layout": layout}
        files = cached_files(key, top, build, cache_dir)
        if not files:
            raise layout_error("ADE20K", root, expected, f"No .jpg images found under {split_dir}.")
        return files, top, layout


def _full_top(base: Path) -> Path:
    """``.../ADE20K_2021_17_01/images/ADE`` -> ``.../ADE20K_2021_17_01`` when it is there."""
    if base.name == "ADE" and base.parent.name == "images":
        return base.parent.parent
    return base


__all__ = ["ADE20K", "find_layouts"]
