"""Config -> objects (dcvq/build.py)."""

import pytest

from dcvq.build import build_dataset
from dcvq.config import compose


def test_a_bad_split_names_the_key_it_came_from():
    cfg = compose(["dataset.train_split=training", "dataset.split=valid"])
    with pytest.raises(ValueError, match="dataset.train_split='training'"):
        build_dataset(cfg, cfg.dataset.train_split, training=True)
    with pytest.raises(Exception, match="dataset.split='valid'"):
        build_dataset(cfg, cfg.dataset.split, training=False)
