"""dataset=fashion_mnist on tiny idx files; the val carving on the real size."""

import gzip
import struct

import numpy as np
import pytest
import torch

from dcvq.data import FashionMNIST
from dcvq.data.fashion_mnist import FILES, carve


def test_val_is_carved_from_the_official_training_set():
    train, val = carve(60000)
    assert (len(train), len(val)) == (55000, 5000)
    assert not set(train) & set(val) and len(np.union1d(train, val)) == 60000
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()
    assert val[:6].tolist() == [17, 28, 50, 66, 72, 89]  # pinned: the split never moves


def write_idx(path, images: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">IIII", 2051, *images.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + images.astype(np.uint8).tobytes())


@pytest.fixture
def data(tmp_path):
    """24 training images (2 of them val) and 6 test images, each distinct and asymmetric."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 6)):
        write_idx(tmp_path / "fashion_mnist" / FILES[split], rng.integers(1, 256, (n, 28, 28)))
    return tmp_path


def test_splits_are_disjoint_padded_and_three_channel(data):
    train, val, test = (FashionMNIST(s, 32, root=data) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (22, 2, 6)
    names = {ds[i][1] for ds in (train, val) for i in range(len(ds))}
    assert len(names) == 24 and not {train[i][1] for i in range(22)} & {val[0][1], val[1][1]}
    x, name = val[1]
    assert name == f"fashion_mnist/val/{carve(24)[1][1]}" and test[5][1] == "fashion_mnist/test/5"
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])
    inner = torch.zeros(32, 32, dtype=torch.bool)
    inner[2:30, 2:30] = True
    assert (x[:, ~inner] == -1).all() and (x[:, inner] > -1).all()  # black border, pixels >= 1
    assert x.min() >= -1 and x.max() <= 1
    assert FashionMNIST("test", 28, root=data)[0][0].shape == (3, 28, 28)


def test_training_flips_come_from_the_key_and_only_when_asked(data):
    plain = FashionMNIST("train", 32, root=data)
    flipping = FashionMNIST("train", 32, root=data, flip=True)
    x = plain[(3, 0)][0]
    assert all(torch.equal(plain[(3, s)][0], x) for s in range(8))
    outs = [flipping[(3, s)][0] for s in range(8)]
    assert all(torch.equal(o, x) or torch.equal(o, x.flip(2)) for o in outs)
    assert any(torch.equal(o, x) for o in outs) and any(torch.equal(o, x.flip(2)) for o in outs)
    assert torch.equal(flipping[(3, 5)][0], flipping[(3, 5)][0])
    val = FashionMNIST("val", 32, root=data, flip=True)
    assert torch.equal(val[(0, 1)][0], val[(0, 2)][0])  # evaluation is fixed


def test_bad_settings_and_missing_data_are_explained(tmp_path, data, monkeypatch):
    with pytest.raises(ValueError, match="dataset.resolution=27"):
        FashionMNIST("test", 27, root=data)
    with pytest.raises(ValueError, match="dataset.split='validation'"):
        FashionMNIST("validation", 32, root=data)
    with pytest.raises(FileNotFoundError, match="make data") as info:
        FashionMNIST("test", 32, root=tmp_path / "nowhere")
    assert "dataset-fashion-mnist" in str(info.value) and "nowhere" in str(info.value)
    (data / "fashion_mnist" / FILES["test"]).write_bytes(gzip.compress(b"not an idx file"))
    with pytest.raises(FileNotFoundError, match="not an idx3 image file"):
        FashionMNIST("test", 32, root=data)
    monkeypatch.setenv("DCVQ_DATA", str(data))
    assert len(FashionMNIST("val")) == 2


def test_a_composed_config_builds_every_split(data):
    from dcvq.build import build_dataset
    from dcvq.config import compose

    cfg = compose(["experiment=tiny", "dataset=fashion_mnist", f"dataset.root={data}"])
    test = build_dataset(cfg, cfg.dataset.test_split, training=False)
    assert isinstance(test, FashionMNIST) and len(test) == 6 and test[0][0].shape == (3, 32, 32)
    assert len(build_dataset(cfg, cfg.dataset.split, training=False)) == 2
    assert len(build_dataset(cfg, cfg.dataset.train_split, training=True)) == 22
