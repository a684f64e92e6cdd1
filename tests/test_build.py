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
