"""CelebA-HQ: CelebAMask-HQ with taming's lists, plain folders, VQCT's pickled lists."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from dcvq.data.celebahq import CelebAHQ, read_names_pickle
from dcvq.data.index import LayoutError


def names(ds):
    return [ds.name(i) for i in range(len(ds))]


def test_celebamask_with_index_lists(trees):
    top = trees.celebamask(n=6)
    for root in (top, top.parent, top / "CelebA-HQ-img"):
        train = CelebAHQ(root, split="train", resolution=8)
        assert train.layout == "celebamask"
        assert names(train) == [f"CelebA-HQ-img/{i}.jpg" for i in (0, 2, 4)]
    val = CelebAHQ(top, split="val", resolution=8)
    assert names(val) == [f"CelebA-HQ-img/{i}.jpg" for i in (1, 3, 5)]
    assert val[0][0].shape == (3, 8, 8)


def test_celebamask_with_tamings_npy_lists(trees):
    top = trees.celebamask(n=6, npy=True)
    train = CelebAHQ(top, split="train", resolution=8)
    assert names(train) == [f"CelebA-HQ-img/{i}.jpg" for i in (0, 2, 4)]
    (top / "CelebA-HQ-to-CelebA-mapping.txt").unlink()
    with pytest.raises(FileNotFoundError, match="CelebA-HQ-to-CelebA-mapping.txt"):
        CelebAHQ(top, split="val")


def test_lists_elsewhere_or_missing(trees, tmp_path):
    top = trees.celebamask(n=6, lists=False)
    with pytest.raises(FileNotFoundError, match="celebahqtrain.txt"):
        CelebAHQ(top, split="train")
    custom = tmp_path / "mine.txt"
    custom.write_text("/abs/path/data256x256/5.jpg\n3,extra\n\n")
    ds = CelebAHQ(top, split="val", split_file=custom, resolution=8)
    assert names(ds) == ["CelebA-HQ-img/3.jpg", "CelebA-HQ-img/5.jpg"]
    (top.parent / "celebahqtrain.txt").write_text("1\n4\n")  # beside CelebAMask-HQ/
    assert names(CelebAHQ(top, split="train")) == ["CelebA-HQ-img/1.jpg", "CelebA-HQ-img/4.jpg"]
    with pytest.raises(ValueError, match="dataset.split='test'"):
        CelebAHQ(top, split="test")


def test_list_naming_nothing_on_disk(trees, tmp_path):
    top = trees.celebamask(n=2, lists=False)
    bad = tmp_path / "bad.txt"
    bad.write_text("100\n101\n")
    with pytest.raises(ValueError, match="none of the 2 images"):
        CelebAHQ(top, split="train", split_file=bad)


def test_plain_folders(trees):
    top = trees.celeb_folders(val_name="validation")
    assert len(CelebAHQ(top, split="train", resolution=8)) == 3
    val = CelebAHQ(top, split="val", resolution=8)
    assert val.layout == "folders"
    assert names(val) == ["validation/00000.png", "validation/00001.png"]
    assert len(CelebAHQ(top, split="test")) == 1


def test_vqct_pickled_lists(trees):
    top = trees.celeb_vqct()
    train = CelebAHQ(top, split="train", resolution=8)
    assert train.layout == "vqct" and names(train) == [f"images/{i}.jpg" for i in range(3)]
    assert len(CelebAHQ(top.parent, split="test")) == 2
    with pytest.raises(ValueError, match=r"dataset.split='val'.*\('train', 'test'\)"):
        CelebAHQ(top, split="val")
    listed = top / "val.txt"
    listed.write_text("4\n1.jpg\n")
    val = CelebAHQ(top, split="val", split_file=listed)
    assert val.layout == "vqct" and names(val) == ["images/1.jpg", "images/4.jpg"]


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


@pytest.mark.parametrize(
    "payload, message",
    [
        (pickle.dumps(["0", _Evil()]), "refusing to load builtins.print"),
        (pickle.dumps(np.array(["0", "1"])), "refusing to load numpy"),
        (pickle.dumps({"a": 1}), "not a list"),
        (pickle.dumps([1.5]), "float entry"),
        (b"garbage", "refused"),
    ],
)
def test_untrusted_pickles_are_refused(tmp_path, payload, message, capsys):
    path = tmp_path / "filenames.pickle"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=message) as e:
        read_names_pickle(path)
    assert "dataset.split_file" in str(e.value)
    assert "code ran" not in capsys.readouterr().out


def test_python2_style_pickle_and_escaping_names(tmp_path, trees):
    path = tmp_path / "p.pickle"
    # what Python 2's pickle.dumps(['12', 13, u'14.png']) writes: str as 8-bit STRING
    path.write_bytes(b"(lp0\nS'12'\np1\naI13\naV14.png\np2\na.")
    assert read_names_pickle(path) == ["12", "13", "14.png"]
    top = trees.celeb_vqct({"train": ["0"]})
    (top / "train" / "filenames.pickle").write_bytes(pickle.dumps(["../../etc/passwd"]))
    with pytest.raises(ValueError, match="inside"):
        CelebAHQ(top, split="train")


def test_wrong_root(trees, make_image):
    make_image(trees.tmp / "faces" / "a.jpg")
    with pytest.raises(LayoutError) as e:
        CelebAHQ(trees.tmp / "faces")
    assert "filenames.pickle" in str(e.value) and "CelebA-HQ-img" in str(e.value)
    assert "a.jpg" in str(e.value)
