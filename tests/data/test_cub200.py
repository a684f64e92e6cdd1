"""CUB-200-2011 through images.txt and train_test_split.txt."""

from __future__ import annotations

import pytest

from dcvq.data.cub200 import CUB200
from dcvq.data.index import LayoutError


def test_splits_follow_the_split_file(trees):
    top = trees.cub()
    for root in (top, top.parent):
        train = CUB200(root, split="train", resolution=8)
        assert len(train) == 3
        assert [train.name(i) for i in range(3)] == [
            "images/001.Black_footed_Albatross/Black_footed_Albatross_0000_1.jpg",
            "images/001.Black_footed_Albatross/Black_footed_Albatross_0002_3.jpg",
            "images/002.Laysan_Albatross/Laysan_Albatross_0000_4.jpg",
        ]
    test = CUB200(top, split="test", resolution=8)
    assert len(test) == 3 and test.policy == "center_crop"
    assert set(map(test.name, range(3))).isdisjoint(map(train.name, range(3)))
    assert test[0][0].shape == (3, 8, 8)


def test_no_validation_split(trees):
    with pytest.raises(ValueError, match=r"dataset.split='val'.*\('train', 'test'\)"):
        CUB200(trees.cub(), split="val")


def test_missing_metadata_is_a_layout_error(trees):
    top = trees.cub()
    (top / "train_test_split.txt").unlink()
    with pytest.raises(LayoutError, match="train_test_split.txt"):
        CUB200(top, split="train")


def test_missing_image_is_kept_and_skipped(trees, caplog):
    top = trees.cub()
    gone = top / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0000_4.jpg"
    gone.unlink()
    ds = CUB200(top, split="train", resolution=8)
    assert len(ds) == 3 and "missing" in caplog.text
    x, name = ds[2]
    assert x is None and name.endswith("Laysan_Albatross_0000_4.jpg")


def test_inconsistent_metadata(trees):
    top = trees.cub()
    (top / "train_test_split.txt").write_text("1 1\n2 0\n")
    with pytest.raises(ValueError, match="disagree"):
        CUB200(top, split="train")
