"""dataset=photos: the committed manifest, and the dataset on a tiny prepared tree."""

import hashlib
import json
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch
from PIL import Image

from dcvq.data import Photos, photos

# Licences that allow redistribution and use (SPDX ids, plus the public-domain statuses
# scikit-image's docstrings give).
ALLOWED_LICENSES = {
    "CC0-1.0",
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "GPL-2.0-or-later",
    "BSD-3-Clause",
    "public-domain",
    "no-known-copyright",
}
OLD_HELD_OUT = ("chelsea", "coffee")


def scene(name: str) -> str:
    """A stereo pair (motorcycle_left/_right) is one scene."""
    return name.removesuffix("_left").removesuffix("_right")


def split_rule(rows: list[photos.Photo]) -> dict[str, str]:
    """How the manifest's splits were assigned (photos.py's docstring says it in words)."""
    scenes = defaultdict(set)
    for p in rows:
        if p.name not in OLD_HELD_OUT:
            scenes[p.source].add(scene(p.name))
    split = {}
    for names in scenes.values():
        for k, s in enumerate(sorted(names, key=lambda s: hashlib.sha256(s.encode()).hexdigest())):
            split[s] = "test" if k % 6 == 0 else "val" if k % 6 == 3 else "train"
    return {p.name: "val" if p.name in OLD_HELD_OUT else split[scene(p.name)] for p in rows}


def test_the_committed_manifest_splits_by_photo():
    rows = photos.read_manifest()
    names = [p.name for p in rows]
    assert len(names) == len(set(names)) >= 40
    count = Counter(p.split for p in rows)
    assert set(count) == {"train", "val", "test"} and count["test"] >= 8 and count["val"] >= 6
    assert {p.license for p in rows} <= ALLOWED_LICENSES
    by_name = {p.name: p for p in rows}
    assert all(by_name[n].split != "test" for n in OLD_HELD_OUT)  # they chose old settings
    assert by_name["motorcycle_left"].split == by_name["motorcycle_right"].split
    assert len({p.sha256 for p in rows}) == len(rows)  # no file twice
    assert split_rule(rows) == {p.name: p.split for p in rows}
    assert all(p.source == "skimage" or p.source.count("=") == 1 for p in rows)  # pkg=version
    assert len({p.source for p in rows if p.split == "test"}) >= 4  # sources spread over splits


def write_prepared(root, monkeypatch, splits=("train", "train", "val", "test", "test")):
    """A tiny manifest (monkeypatched in) and its prepared tree: 256x256 PNGs, prepared.json."""
    manifest = root / "photos.csv"
    rows = [
        photos.Photo(
            f"p{k}", "fake-wallpapers=1.0", f"usr/p{k}.jpg", "CC0-1.0", "A", s, f"{k:064x}"
        )
        for k, s in enumerate(splits)
    ]
    with open(manifest, "w") as f:
        f.write("name,source,file,license,author,split,sha256\n")
        for p in rows:
            f.write(f"{p.name},{p.source},{p.file},{p.license},{p.author},{p.split},{p.sha256}\n")
    monkeypatch.setattr(photos, "MANIFEST", manifest)
    top = root / "data" / "photos"
    y, x = np.mgrid[0:256, 0:256]
    for k, p in enumerate(rows):
        arr = np.stack([x, y, (x + y + 40 * k) % 256], -1).astype(np.uint8)
        (top / p.split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(top / p.split / f"{p.name}.png")
    (top / photos.RECORD).write_text(json.dumps(photos.record(rows)))
    return root / "data"


@pytest.fixture
def data(tmp_path, monkeypatch):
    return write_prepared(tmp_path, monkeypatch)


def test_val_and_test_are_the_fixed_grid_of_tiles(data):
    test = Photos("test", 64, root=data)
    assert len(test) == 2 * 16 and test.info()["photos"] == ["p3", "p4"]
    names = [test[i][1] for i in range(len(test))]
    assert names[:5] == ["p3@0,0", "p3@0,64", "p3@0,128", "p3@0,192", "p3@64,0"]
    assert names[16] == "p4@0,0" and len(set(names)) == len(names)
    x, name = test[5]  # p3@64,64
    png = np.asarray(Image.open(data / "photos" / "test" / "p3.png"))[64:128, 64:128]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and name == "p3@64,64"
    assert torch.equal(x, torch.from_numpy(png.copy()).permute(2, 0, 1).float() / 127.5 - 1)
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(Photos("test", 64, root=data)[5][0], x)
    assert len(Photos("val", 256, root=data)) == 1


def test_training_crops_depend_only_on_the_key(data):
    train = Photos("train", 32, root=data, samples_per_epoch=10)
    assert len(train) == 10 and train.info()["photos"] == ["p0", "p1"]
    x, name = train[(3, 42)]
    assert x.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert name.startswith("p1@")  # item i shows photo i % 2
    again = Photos("train", 32, root=data, samples_per_epoch=10)[(3, 42)]
    assert torch.equal(x, again[0]) and name == again[1]
    assert any(not torch.equal(x, train[(3, s)][0]) for s in (43, 44, 45))


def test_data_dir_comes_from_dcvq_data(data, monkeypatch):
    monkeypatch.setenv("DCVQ_DATA", str(data))
    assert Photos("val", 128).root == data / "photos"
    assert Photos("val", 128, root=data / "photos").root == data / "photos"


def test_missing_or_stale_data_says_to_run_make_data(tmp_path, data):
    with pytest.raises(FileNotFoundError, match="make data") as info:
        Photos("val", 64, root=tmp_path / "empty")
    assert str(tmp_path / "empty") in str(info.value) and "apt-get" in str(info.value)
    (data / "photos" / "test" / "p4.png").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"1 of the 2 test photos are missing: \['p4'\].*\n.*make data"
    ):
        Photos("test", 64, root=data)
    photos.MANIFEST.write_text(photos.MANIFEST.read_text().replace("p1,", "p9,"))
    with pytest.raises(FileNotFoundError, match="another version of photos.csv"):
        Photos("train", 64, root=data)


@pytest.mark.parametrize(
    "kw, key",
    [({"split": "valid"}, "dataset.split='valid'"), ({"resolution": 16}, "dataset.resolution=16"),
     ({"resolution": 512}, "dataset.resolution=512"),
     ({"samples_per_epoch": 0}, "dataset.samples_per_epoch=0")],
)  # fmt: skip
def test_bad_settings_name_their_key(data, kw, key):
    with pytest.raises(ValueError, match=key.replace("[", r"\[")):
        Photos(**{"split": "train", "resolution": 64, "root": data, **kw})


def test_a_composed_config_builds_every_split(data):
    from dcvq.build import build_dataset
    from dcvq.config import compose

    cfg = compose(["experiment=tiny", "dataset=photos", f"dataset.root={data}"])
    assert (cfg.dataset.train_split, cfg.dataset.split, cfg.dataset.test_split) == (
        "train", "val", "test",
    )  # fmt: skip
    test = build_dataset(cfg, cfg.dataset.test_split, training=False)
    assert isinstance(test, Photos) and test.split == "test" and len(test) == 2 * 64
    train = build_dataset(cfg, cfg.dataset.train_split, training=True)
    assert train.flip and train[(0, 1)][0].shape == (3, 32, 32)
