"""ADE20K: the challenge copy and the full 2021 release, from any sensible root."""

from __future__ import annotations

import pytest

from dcvq.data.ade20k import ADE20K
from dcvq.data.index import LayoutError


def test_challenge_layout(trees):
    top = trees.ade_challenge(n_train=3, n_val=2)
    for root in (top, top.parent, top / "images"):
        train = ADE20K(root, split="train", resolution=8)
        assert train.layout == "challenge" and len(train) == 3
        assert train.name(0) == "images/training/ADE_train_00000001.jpg"
        assert (train.policy, train.flip) == ("random_crop", True)
    val = ADE20K(top, split="val", resolution=8)
    assert len(val) == 2 and (val.policy, val.flip) == ("center_crop", False)
    x, name = val[0]
    assert x.shape == (3, 8, 8) and name == "images/validation/ADE_val_00000001.jpg"


def test_full_release_takes_only_the_photos(trees):
    top = trees.ade_full()
    for root in (top, top.parent, top / "images", top / "images" / "ADE"):
        train = ADE20K(root, split="train", resolution=8)
        assert train.layout == "full"
        assert [train.name(i) for i in range(len(train))] == [
            "images/ADE/training/cultural/apse__indoor/ADE_train_00000001.jpg",
            "images/ADE/training/cultural/apse__indoor/ADE_train_00000002.jpg",
            "images/ADE/training/urban/street/ADE_train_00000003.jpg",
            "images/ADE/training/urban/street/ADE_train_00000004.jpg",
            "images/ADE/training/urban/street/ADE_train_00000005.jpg",
        ]
    val = ADE20K(top, split="val", resolution=8, policy="squash")
    assert len(val) == 1 and val.policy == "squash"
    assert val[0][0].shape == (3, 8, 8)


def test_both_copies_need_a_choice(trees):
    trees.ade_challenge()
    trees.ade_full()
    with pytest.raises(ValueError, match="dataset.layout"):
        ADE20K(trees.tmp, split="train")
    assert len(ADE20K(trees.tmp, split="train", layout="full")) == 5
    assert len(ADE20K(trees.tmp, split="train", layout="challenge")) == 3


def test_wrong_root_says_what_was_expected_and_found(trees, make_image):
    make_image(trees.tmp / "photos" / "a.jpg")
    with pytest.raises(LayoutError) as e:
        ADE20K(trees.tmp, split="train")
    msg = str(e.value)
    assert "ADEChallengeData2016/images/{training,validation}" in msg
    assert "ADE20K_2021_17_01/images/ADE" in msg and "photos/" in msg


def test_bad_split_and_layout(trees):
    top = trees.ade_challenge()
    with pytest.raises(ValueError, match=r"dataset.split='test'.*\('train', 'val'\)"):
        ADE20K(top, split="test")
    with pytest.raises(ValueError, match="dataset.layout"):
        ADE20K(top, split="train", layout="2016")
    with pytest.raises(LayoutError):
        ADE20K(top, split="train", layout="full")


def test_root_from_environment(trees, monkeypatch):
    top = trees.ade_challenge()
    monkeypatch.setenv("DCVQ_ADE20K_ROOT", str(top))
    assert len(ADE20K(split="val")) == 2
