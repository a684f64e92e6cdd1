"""The ImageFiles contract on bad files: odd formats are converted, broken ones skipped."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from dcvq.data.base import ImageFiles, collate, split_defaults


def _check(x: torch.Tensor | None, r: int) -> None:
    assert x is not None
    assert x.shape == (3, r, r) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1


@pytest.fixture
def odd_files(tmp_path, make_image):
    """One decodable file of every awkward kind."""
    d = tmp_path / "odd"
    files = {
        "gray.jpg": make_image(d / "gray.jpg", mode="L"),
        "rgba.png": make_image(d / "rgba.png", mode="RGBA"),
        "palette.png": make_image(d / "palette.png", mode="P"),
        "palette.gif": make_image(d / "palette.gif", mode="P"),
        "cmyk.jpg": make_image(d / "cmyk.jpg", mode="CMYK"),
        "small.png": make_image(d / "small.png", size=(3, 2)),
        "la.png": make_image(d / "la.png", mode="LA"),
    }
    p16 = d / "deep16.png"
    Image.fromarray(np.full((10, 12), 40000, dtype=np.uint16)).save(p16)
    files["deep16.png"] = p16
    rot = d / "rotated.jpg"
    img = Image.fromarray(np.zeros((10, 30, 3), dtype=np.uint8))  # 30 wide, 10 high
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 270 on display: shown 10 wide, 30 high
    img.save(rot, exif=exif)
    files["rotated.jpg"] = rot
    return files


def test_awkward_formats_are_converted(odd_files, tmp_path):
    assert Image.open(odd_files["deep16.png"]).mode.startswith("I")
    assert Image.open(odd_files["cmyk.jpg"]).mode == "CMYK"
    ds = ImageFiles(list(odd_files.values()), 16, "center_crop", root=tmp_path)
    for i in range(len(ds)):
        x, name = ds[i]
        _check(x, 16)
        assert name.startswith("odd/")
    # 16-bit: 40000 / 65535 of full scale, not stretched to white
    x, _ = ds[list(odd_files).index("deep16.png")]
    assert abs(float(x.mean()) - (round(40000 / 257) / 127.5 - 1)) < 0.02


def test_exif_rotation_reaches_the_tensor(odd_files):
    from dcvq.data.base import load_rgb

    assert load_rgb(odd_files["rotated.jpg"]).size == (10, 30)


@pytest.fixture
def broken_files(tmp_path, make_jpeg_bytes):
    d = tmp_path / "broken"
    d.mkdir()
    good = make_jpeg_bytes(size=(64, 48))
    files = {
        "good.jpg": good,
        "truncated.jpg": good[: len(good) // 2],
        "empty.jpg": b"",
        "corrupt.jpg": b"\xff\xd8\xff" + bytes(range(256)) * 4,
        "text.png": b"this is not a png\n",
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    return [d / n for n in files] + [d / "missing.jpg"]


def test_broken_files_are_skipped_and_named(broken_files, tmp_path, caplog):
    ds = ImageFiles(broken_files, 16, "center_crop", root=tmp_path)
    with caplog.at_level(logging.WARNING, logger="dcvq.data.base"):
        items = [ds[i] for i in range(len(ds))]
    _check(items[0][0], 16)
    bad = [name for x, name in items if x is None]
    assert bad == [
        f"broken/{n}"
        for n in ("truncated.jpg", "empty.jpg", "corrupt.jpg", "text.png", "missing.jpg")
    ]
    for name in bad:
        assert name.split("/")[1] in caplog.text
    batch = collate(items)
    assert batch.images.shape == (1, 3, 16, 16)
    assert batch.names == ["broken/good.jpg"] and batch.skipped == bad


def test_truncated_file_is_skipped_even_when_pil_is_told_to_pad(broken_files, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    ds = ImageFiles(broken_files[:2], 16, "center_crop")
    assert ds[1][0] is None
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for whoever set it


def test_collate_of_only_failures():
    batch = collate([(None, "a"), (None, "b")])
    assert batch.images.shape[0] == 0 and batch.skipped == ["a", "b"]


def test_batches_are_pinned_by_the_data_loader(monkeypatch):
    """DataLoader(pin_memory=True) pins a custom batch only through its own method."""
    from torch.utils.data._utils.pin_memory import pin_memory

    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t, *a: pinned.append(t) or t)
    batch = collate([(torch.zeros(3, 2, 2), "a"), (None, "b")])
    out = pin_memory(batch)
    assert isinstance(out, type(batch)) and out.names == ["a"] and out.skipped == ["b"]
    assert len(pinned) == 1 and pinned[0] is batch.images


def test_training_key_gives_reproducible_crops(odd_files):
    ds = ImageFiles([odd_files["la.png"]], 8, "random_crop", flip=True)
    a, _ = ds[(0, 123)]
    b, _ = ds[(0, 123)]
    assert torch.equal(a, b)


def test_split_defaults():
    assert split_defaults("train", None, None) == ("random_crop", True)
    assert split_defaults("val", None, None) == ("center_crop", False)
    assert split_defaults("test", "squash", True) == ("squash", True)
    with pytest.raises(ValueError, match="dataset.policy"):
        split_defaults("val", "crop", None)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="resolution"):
        ImageFiles([], 0, "center_crop")
    with pytest.raises(ValueError, match="policy"):
        ImageFiles([], 8, "nope")
    ds = ImageFiles([tmp_path / "x.jpg"], 8, "squash", root=tmp_path)
    assert ds.info()["n_images"] == 1 and ds.info()["policy"] == "squash"
    assert (
        ImageFiles([tmp_path / "x.jpg"], 8, "squash", root=tmp_path / "other")
        .name(0)
        .endswith("x.jpg")
    )
