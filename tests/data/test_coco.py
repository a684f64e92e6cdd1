"""COCO 2014 / 2017, the doubly nested copy, year detection, Hydra construction."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from dcvq.data.coco import COCO
from dcvq.data.index import LayoutError


@pytest.mark.parametrize("year", [2014, 2017])
def test_flat_layout(trees, year):
    top = trees.coco(year=year, n=3)
    for root in (top, top.parent):
        train = COCO(root, split="train", resolution=8)
        assert train.year == year and len(train) == 3
        assert train.name(0) == f"train{year}/COCO_train{year}_000000000000.jpg"
    assert len(COCO(top, split="val", resolution=8)) == 2


def test_nested_copy(trees):
    top = trees.coco(year=2014, nested=True, n=3)
    val = COCO(top, split="val", resolution=8)
    assert val.layout == "coco2014-nested" and len(val) == 2
    assert val.name(1) == "val2014/val2014/COCO_val2014_000000000001.jpg"
    x, _ = val[1]
    assert x.shape == (3, 8, 8)


def test_year_detection_prefers_2014(trees):
    top = trees.coco(year=2014, n=2)
    trees.coco(year=2017, n=4)
    assert COCO(top, split="train").year == 2014
    assert len(COCO(top, split="train", year=2017)) == 4


def test_missing_year_or_split(trees):
    top = trees.coco(year=2017, n=2)
    with pytest.raises(LayoutError, match=r"train2014/\*\.jpg"):
        COCO(top, split="train", year=2014)
    with pytest.raises(LayoutError, match="test2017"):
        COCO(top, split="test")
    with pytest.raises(ValueError, match="dataset.year"):
        COCO(top, year=2015)
    with pytest.raises(ValueError, match=r"dataset.split='validation'.*'train', 'val', 'test'"):
        COCO(top, split="validation")


def test_wrong_root_lists_entries(trees, make_image):
    make_image(trees.tmp / "images" / "x.jpg")
    (trees.tmp / "annotations").mkdir()
    with pytest.raises(LayoutError) as e:
        COCO(trees.tmp, split="val")
    assert "val2014" in str(e.value) and "annotations/" in str(e.value)


def test_unset_root_names_the_variable():
    with pytest.raises(ValueError, match="DCVQ_COCO_ROOT"):
        COCO(split="val")


def test_hydra_instantiate(trees, tmp_path):
    top = trees.coco(n=3)
    ds = instantiate(
        {
            "_target_": "dcvq.data.coco.COCO",
            "root": str(top),
            "split": "val",
            "resolution": 8,
            "policy": None,
            "flip": None,
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    assert len(ds) == 2 and ds.policy == "center_crop" and ds.flip is False
    assert list((tmp_path / "cache").glob("coco-val-*.json"))
    assert ds.info()["split"] == "val" and ds.info()["layout"] == "coco2014"


def test_dataset_pickles_for_loader_workers(trees):
    import pickle

    ds = COCO(trees.coco(n=3), split="val", resolution=8)
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == 2 and clone.name(1) == ds.name(1)
    assert clone[1][0].shape == (3, 8, 8)
