"""The cached file index: listed once, reused, invalidated by added/removed files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dcvq.data import index
from dcvq.data.coco import COCO
from dcvq.data.imagefolder import ImageFolder
from dcvq.data.index import (
    Listing,
    cached_files,
    default_cache_dir,
    is_image,
    layout_error,
    resolve_root,
)


@pytest.fixture
def count_scandir(monkeypatch):
    """Counts os.scandir calls (the only way the index reads a directory)."""
    calls = []
    real = os.scandir

    def counting(path="."):
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", counting)
    return calls


def test_second_construction_does_not_relist(trees, count_scandir, index_cache):
    root = trees.coco(n=4)
    first = COCO(root, split="train", resolution=8)
    assert len(first) == 4 and count_scandir
    count_scandir.clear()
    second = COCO(root, split="train", resolution=8)
    assert count_scandir == []
    assert second.files == first.files
    cache_files = list(index_cache.glob("*.json"))
    assert len(cache_files) == 1 and cache_files[0].name.startswith("coco-train-")
    entry = json.loads(cache_files[0].read_text())
    assert entry["files"] == [f"train2014/COCO_train2014_{i:012d}.jpg" for i in range(4)]
    assert not list(index_cache.glob("*.tmp"))  # the atomic write left nothing behind


def test_added_and_removed_files_invalidate(trees, make_image, count_scandir, age):
    root = trees.coco(n=2)
    assert len(COCO(root, split="train", resolution=8)) == 2
    # aged again, to a later time than the cached entry: only the mtime check can tell
    new = make_image(root / "train2014" / "COCO_train2014_000000000099.jpg")
    age(root, seconds=1800)
    count_scandir.clear()
    ds = COCO(root, split="train", resolution=8)
    assert len(ds) == 3 and count_scandir
    count_scandir.clear()
    assert len(COCO(root, split="train", resolution=8)) == 3 and not count_scandir
    new.unlink()
    age(root, seconds=900)
    assert len(COCO(root, split="train", resolution=8)) == 2


def test_recently_changed_folders_are_not_cached(trees, make_image, count_scandir, index_cache):
    root = trees.coco(n=2)
    make_image(root / "train2014" / "COCO_train2014_000000000099.jpg")  # mtime: now
    assert len(COCO(root, split="train", resolution=8)) == 3
    assert not list(index_cache.glob("coco-train-*.json"))
    count_scandir.clear()
    assert len(COCO(root, split="train", resolution=8)) == 3 and count_scandir


def test_change_deep_in_a_tree_invalidates(trees, make_image, age, index_cache):
    root = trees.tmp / "mine"
    make_image(root / "a" / "b" / "c" / "1.png")
    age(root)
    assert len(ImageFolder(root, resolution=8)) == 1
    assert list(index_cache.glob("*.json"))
    make_image(root / "a" / "b" / "c" / "2.png")
    age(root, seconds=1800)
    assert len(ImageFolder(root, resolution=8)) == 2


def test_splits_and_roots_have_their_own_entries(trees, index_cache):
    root = trees.coco(n=3)
    assert len(COCO(root, split="train", resolution=8)) == 3
    assert len(COCO(root, split="val", resolution=8)) == 2
    assert len(list(index_cache.glob("*.json"))) == 2


def test_corrupt_or_unwritable_cache_costs_only_a_relisting(trees, tmp_path, caplog):
    root = trees.coco(n=2)
    cache = tmp_path / "c"
    COCO(root, split="train", resolution=8, cache_dir=cache)
    (entry,) = cache.glob("*.json")
    entry.write_text("{ not json")
    assert len(COCO(root, split="train", resolution=8, cache_dir=cache)) == 2
    assert json.loads(entry.read_text())["files"]  # rewritten
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert len(COCO(root, split="train", resolution=8, cache_dir=blocker / "sub")) == 2
    assert "could not write the file index" in caplog.text


def test_cache_dir_choice(monkeypatch, tmp_path):
    assert default_cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("DCVQ_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env" / "index"
    monkeypatch.delenv("DCVQ_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "dcvq" / "index"


def test_listing_is_sorted_and_filters_names(tmp_path, make_image):
    for name in (
        "b.JPG",
        "a.jpeg",
        "c.Png",
        "C.webp",
        ".hidden.jpg",
        "._a.jpg",
        "notes.txt",
        "seg.json",
    ):
        if name.endswith(("txt", "json")):
            (tmp_path / name).write_text("x")
        else:
            make_image(tmp_path / name, fmt="PNG")
    make_image(tmp_path / ".git" / "x.jpg", fmt="PNG")
    make_image(tmp_path / "sub" / "d.bmp")

    def build(listing: Listing) -> None:
        listing.scan(tmp_path, max_depth=None)

    files = cached_files({"dataset": "t", "split": "all"}, tmp_path, build, tmp_path / "cache")
    names = [Path(f).relative_to(tmp_path).as_posix() for f in files]
    assert all(isinstance(f, str) and Path(f).is_absolute() for f in files)
    assert names == ["C.webp", "a.jpeg", "b.JPG", "c.Png", "sub/d.bmp"]  # code point order
    assert is_image("X.TIFF") and not is_image("x.jpg.txt") and not is_image(".x.jpg")


def test_symlink_cycle_is_listed_once(tmp_path, make_image):
    make_image(tmp_path / "top" / "a.png")
    os.symlink(tmp_path / "top", tmp_path / "top" / "loop")
    assert len(ImageFolder(tmp_path / "top", resolution=8)) == 1


def test_root_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="DCVQ_COCO_ROOT"):
        resolve_root(None, "DCVQ_COCO_ROOT", "COCO")
    with pytest.raises(ValueError, match="dataset.root is not set"):
        resolve_root("???", "DCVQ_COCO_ROOT", "COCO")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_root(tmp_path / "nope", "DCVQ_COCO_ROOT", "COCO")
    monkeypatch.setenv("DCVQ_COCO_ROOT", str(tmp_path))
    assert resolve_root(None, "DCVQ_COCO_ROOT", "COCO") == tmp_path.resolve()


def test_layout_error_lists_what_was_found(tmp_path):
    for i in range(12):
        (tmp_path / f"entry{i:02d}").mkdir()
    msg = str(layout_error("X", tmp_path, ["a/b/*.jpg"]))
    assert "a/b/*.jpg" in msg and "entry00/" in msg and "(12 entries)" in msg


def test_index_version_is_part_of_the_key(trees, index_cache, monkeypatch):
    root = trees.coco(n=2)
    COCO(root, split="train", resolution=8)
    monkeypatch.setattr(index, "INDEX_VERSION", index.INDEX_VERSION + 1)
    COCO(root, split="train", resolution=8)
    assert len(list(index_cache.glob("*.json"))) == 2
