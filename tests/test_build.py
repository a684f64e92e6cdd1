"""Config -> objects (dcvq/build.py)."""

import pytest
from hydra.errors import InstantiationException

from dcvq.build import build_dataset
from dcvq.config import compose


def test_a_bad_split_names_the_key_it_came_from():
    cfg = compose(["dataset.train_split=training", "dataset.split=valid"])
    with pytest.raises(ValueError, match="dataset.train_split='training'"):
        build_dataset(cfg, cfg.dataset.train_split, training=True)
    # Evaluation passes Hydra's wrapper on, the dataset's own ValueError as its cause.
    with pytest.raises(InstantiationException, match="dataset.split='valid'") as info:
        build_dataset(cfg, cfg.dataset.split, training=False)
    assert isinstance(info.value.__cause__, ValueError)


@pytest.fixture
def folder(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        Image.new("RGB", (24, 16)).save(tmp_path / split / "a.png")
    return tmp_path


def test_training_and_evaluation_crops_are_chosen_apart(folder):
    """The evaluated split's policy (VQCT's centre crop) does not fix training's crops:
    they stay random (taming) unless dataset.train_policy says otherwise."""
    base = ["dataset=imagefolder", f"dataset.root={folder}", "dataset.resolution=8"]
    cfg = compose([*base, "dataset.policy=center_crop"])
    assert build_dataset(cfg, "train", training=True).policy == "random_crop"
    assert build_dataset(cfg, "val", training=False).policy == "center_crop"
    cfg = compose([*base, "dataset.policy=squash", "dataset.train_policy=center_crop"])
    assert build_dataset(cfg, "train", training=True).policy == "center_crop"
    assert build_dataset(cfg, "val", training=False).policy == "squash"
    cfg = compose([*base, "dataset.train_policy=random_crop"])  # never in evaluation
    assert build_dataset(cfg, "val", training=False).policy == "center_crop"
    cfg = compose([*base, "dataset.train_policy=crop"])
    with pytest.raises(ValueError, match="dataset.train_policy='crop'"):
        build_dataset(cfg, "train", training=True)


def test_the_paper_presets_train_on_random_crops():
    for preset in ("table1_coco", "table1_ade20k", "table1_celebahq", "tableS1_cub"):
        cfg = compose([f"experiment={preset}"])
        assert cfg.dataset.train_policy == "random_crop", preset
