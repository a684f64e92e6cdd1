"""Any folder tree: recursive listing, split folders, deterministic holdout."""

from __future__ import annotations

import pytest

from dcvq.data.imagefolder import ImageFolder, in_holdout
from dcvq.data.index import LayoutError


def names(ds):
    return [ds.name(i) for i in range(len(ds))]


def test_whole_tree_recursive(tmp_path, make_image):
    root = tmp_path / "mine"
    make_image(root / "a.JPG")
    make_image(root / "deep" / "er" / "b.png", fmt="PNG")
    make_image(root / ".cache" / "c.jpg")
    (root / "notes.txt").write_text("x")
    for split in ("train", "val", "test"):
        ds = ImageFolder(root, split=split, resolution=8)
        assert names(ds) == ["a.JPG", "deep/er/b.png"] and ds.layout == "whole-tree"
    assert ImageFolder(root, split="val").policy == "center_crop"


def test_split_folders(tmp_path, make_image):
    root = tmp_path / "mine"
    make_image(root / "train" / "x" / "1.jpg")
    make_image(root / "train" / "2.jpg")
    make_image(root / "validation" / "3.jpg")
    train = ImageFolder(root, split="train", resolution=8)
    assert names(train) == ["train/2.jpg", "train/x/1.jpg"]
    assert names(ImageFolder(root, split="val")) == ["validation/3.jpg"]
    with pytest.raises(ValueError, match=r"dataset.split='test'.*\('train', 'val'\)"):
        ImageFolder(root, split="test")


def test_holdout_is_deterministic_disjoint_and_stable(tmp_path, make_image):
    root = tmp_path / "mine"
    for i in range(40):
        make_image(root / f"{i:03d}.png", size=(4, 4), fmt="PNG")
    train = set(names(ImageFolder(root, split="train", holdout=0.25)))
    val = set(names(ImageFolder(root, split="val", holdout=0.25)))
    assert train.isdisjoint(val) and len(train | val) == 40
    assert 3 <= len(val) <= 20
    assert val == {n for n in train | val if in_holdout(n, 0.25)}
    for i in range(40, 60):
        make_image(root / f"{i:03d}.png", size=(4, 4), fmt="PNG")
    val2 = set(names(ImageFolder(root, split="val", holdout=0.25)))
    assert val <= val2  # adding files never moves old ones
    with pytest.raises(ValueError, match="'train', 'val'"):
        ImageFolder(root, split="test", holdout=0.25)
    with pytest.raises(ValueError, match="holdout"):
        ImageFolder(root, holdout=1.0)


def test_empty_tree(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(LayoutError, match="jpg"):
        ImageFolder(tmp_path / "empty")


def test_getitem(tmp_path, make_image):
    make_image(tmp_path / "r" / "a.png", size=(30, 20), fmt="PNG")
    x, name = ImageFolder(tmp_path / "r", resolution=16)[(0, 5)]
    assert x.shape == (3, 16, 16) and name == "a.png"
