import pytest
import torch

from dcvq.data import SampleImages
from dcvq.data.samples import TRAIN_PHOTOS, VAL_PHOTOS


def test_split_is_by_photo_and_deterministic():
    assert not set(TRAIN_PHOTOS) & set(VAL_PHOTOS)
    val = SampleImages("val", 64)
    assert len(val) > 20 and all(val[i][1].split("@")[0] in VAL_PHOTOS for i in range(len(val)))
    assert torch.equal(val[3][0], SampleImages("val", 64)[3][0])


def test_train_crops_depend_only_on_the_seed():
    ds = SampleImages("train", 32)
    x, name = ds[(5, 42)]
    assert x.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, ds[(5, 42)][0]) and name == ds[(5, 42)][1]
    assert not torch.equal(x, ds[(5, 43)][0])


def test_bad_split_and_resolution_are_explained():
    with pytest.raises(ValueError, match="dataset.split='test'"):
        SampleImages("test", 32)
    with pytest.raises(ValueError, match="dataset.resolution=1024"):
        SampleImages("val", 1024)
