"""Builders of tiny fake dataset trees (a few 8-24 px images each) in temp dirs.

Every test here gets its own file-index cache (``DCVQ_CACHE``), so nothing is written to
the user's ``~/.cache`` and no test sees another's index.
"""

from __future__ import annotations

import io
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def index_cache(tmp_path_factory, monkeypatch) -> Path:
    cache = tmp_path_factory.mktemp("dcvq_cache")
    monkeypatch.setenv("DCVQ_CACHE", str(cache))
    for env in (
        "DCVQ_ADE20K_ROOT",
        "DCVQ_COCO_ROOT",
        "DCVQ_CUB200_ROOT",
        "DCVQ_CELEBAHQ_ROOT",
        "DCVQ_IMAGEFOLDER_ROOT",
    ):
        monkeypatch.delenv(env, raising=False)
    return cache / "index"


def age_tree(top: Path, seconds: float = 3600.0) -> Path:
    """Date every entry under ``top`` (and ``top``) ``seconds`` back: the file index does
    not cache listings of folders changed in the last 2 s (see ``index.RACY_NS``)."""
    t = time.time_ns() - int(seconds * 1e9)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(t, t), follow_symlinks=False)
    os.utime(top, ns=(t, t))
    return top


def write_image(
    path: Path,
    size: tuple[int, int] = (12, 10),
    seed: int = 0,
    fmt: str | None = None,
    mode: str = "RGB",
) -> Path:
    """A small random image at ``path`` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path


class Trees:
    """Fake layouts of every supported dataset under ``tmp``; each returns its root."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def image(self, path: Path, seed: int = 0, **kw) -> Path:
        return write_image(path, seed=seed, **kw)

    def ade_challenge(self, n_train: int = 3, n_val: int = 2) -> Path:
        top = self.tmp / "ADEChallengeData2016"
        for i in range(n_train):
            self.image(top / "images" / "training" / f"ADE_train_{i + 1:08d}.jpg", seed=i)
            (top / "annotations" / "training").mkdir(parents=True, exist_ok=True)
            write_image(top / "annotations" / "training" / f"ADE_train_{i + 1:08d}.png", mode="L")
        for i in range(n_val):
            self.image(top / "images" / "validation" / f"ADE_val_{i + 1:08d}.jpg", seed=50 + i)
        (top / "objectInfo150.txt").write_text("Idx\tRatio\n")
        return age_tree(top)

    def ade_full(self) -> Path:
        """Two categories, three scenes; each image with the release's annotation files."""
        top = self.tmp / "ADE20K_2021_17_01"
        ade = top / "images" / "ADE"
        scenes = {
            "training": [("cultural", "apse__indoor", 2), ("urban", "street", 3)],
            "validation": [("urban", "street", 1)],
        }
        k = 0
        for split, entries in scenes.items():
            kind = "train" if split == "training" else "val"
            for cat, scene, n in entries:
                d = ade / split / cat / scene
                for _ in range(n):
                    k += 1
                    stem = f"ADE_{kind}_{k:08d}"
                    self.image(d / f"{stem}.jpg", seed=k)
                    write_image(d / f"{stem}_seg.png", mode="RGB")
                    write_image(d / f"{stem}_parts_1.png", mode="RGB")
                    (d / f"{stem}.json").write_text("{}")
                    # per-image folder of instance masks, one level below the images
                    write_image(d / stem / f"instance_000_{stem}.png", mode="L")
                    write_image(d / stem / "deeper.jpg")  # never an image of the split
        (top / "index_ade20k.pkl").write_bytes(b"not read")
        return age_tree(top)

    def coco(self, year: int = 2014, nested: bool = False, n: int = 3, parent: str = "") -> Path:
        top = self.tmp / parent if parent else self.tmp / "coco"
        for split, count in (("train", n), ("val", n - 1)):
            d = top / f"{split}{year}"
            if nested:
                d = d / f"{split}{year}"
            for i in range(count):
                self.image(d / f"COCO_{split}{year}_{i:012d}.jpg", seed=i)
        return age_tree(top)

    def cub(self) -> Path:
        """6 images in 2 classes; ids 1,3,4 train (1), ids 2,5,6 test (0)."""
        top = self.tmp / "CUB_200_2011"
        rows, split = [], []
        k = 0
        for cls in ("001.Black_footed_Albatross", "002.Laysan_Albatross"):
            for j in range(3):
                k += 1
                rel = f"{cls}/{cls.split('.')[1]}_{j:04d}_{k}.jpg"
                self.image(top / "images" / rel, seed=k)
                rows.append(f"{k} {rel}")
                split.append(f"{k} {1 if k in (1, 3, 4) else 0}")
        (top / "images.txt").write_text("\n".join(rows) + "\n")
        (top / "train_test_split.txt").write_text("\n".join(split) + "\n")
        (top / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
        return age_tree(top)

    def celebamask(self, n: int = 6, lists: bool = True, npy: bool = False) -> Path:
        """``CelebAMask-HQ/CelebA-HQ-img/{0..n-1}.jpg``, its mapping file and taming-style
        lists (train: even indices, val: odd). With ``npy``, lists name CelebA files."""
        top = self.tmp / "CelebAMask-HQ"
        for i in range(n):
            self.image(top / "CelebA-HQ-img" / f"{i}.jpg", seed=i)
        # CelebA-HQ idx i <- CelebA file (1000 + 7 i).jpg (orig_idx is 0-based)
        rows = ["idx         orig_idx    orig_file   "]
        rows += [f"{i:<12d}{999 + 7 * i:<12d}{1000 + 7 * i:06d}.jpg" for i in range(n)]
        (top / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(rows) + "\n")
        if lists:
            for name, parity in (("celebahqtrain.txt", 0), ("celebahqvalidation.txt", 1)):
                idx = [i for i in range(n) if i % 2 == parity]
                lines = [f"{1000 + 7 * i:06d}.npy" if npy else str(i) for i in idx]
                (top / name).write_text("\n".join(lines) + "\n")
        return age_tree(top)

    def celeb_vqct(self, names: dict[str, list] | None = None) -> Path:
        top = self.tmp / "celehq"
        names = names or {"train": ["0", "1", "2"], "test": ["3", "4"]}
        for split, items in names.items():
            (top / split).mkdir(parents=True, exist_ok=True)
            (top / split / "filenames.pickle").write_bytes(pickle.dumps(items, protocol=2))
            for item in items:
                self.image(top / "images" / f"{item}.jpg", seed=int(item))
        return age_tree(top)

    def celeb_folders(self, val_name: str = "val") -> Path:
        top = self.tmp / "celebahq_folders"
        for split, n in (("train", 3), (val_name, 2), ("test", 1)):
            for i in range(n):
                self.image(top / split / f"{i:05d}.png", seed=i, fmt="PNG")
        return age_tree(top)


@pytest.fixture
def trees(tmp_path) -> Trees:
    return Trees(tmp_path)


def jpeg_bytes(size=(12, 10), seed: int = 0) -> bytes:
    buf = io.BytesIO()
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
def make_image():
    """``make_image(path, size=..., mode=..., fmt=...)`` writes a small random image."""
    return write_image


@pytest.fixture
def age():
    """``age(path)``: date a tree an hour back so its listing gets cached."""
    return age_tree


@pytest.fixture
def make_jpeg_bytes():
    return jpeg_bytes
