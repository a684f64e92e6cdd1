"""`make data` (dcvq.data.prepare) on fake Debian packages: never apt's real mirror."""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import skimage
from PIL import Image

from dcvq.data import Photos, fashion_mnist, photos, prepare
from dcvq.data.prepare import PrepareError, prepare_fashion_mnist, prepare_photos

PACKAGE = "fake-wallpapers"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A fake package tree of 3 photos (wide, tall, grayscale), a manifest of them plus
    scikit-image's chelsea (monkeypatched in), and ``fetch`` that 'downloads' the tree."""
    tree = tmp_path / "package"
    sizes = {
        "wide.jpg": (300, 200, "RGB"),
        "tall.png": (200, 400, "RGB"),
        "grey.png": (260, 260, "L"),
    }
    rows = ["name,source,file,license,author,split,sha256"]
    for k, (file, (w, h, mode)) in enumerate(sizes.items()):
        path = tree / "usr" / "share" / file
        path.parent.mkdir(parents=True, exist_ok=True)
        y, x = np.mgrid[0:h, 0:w]
        Image.fromarray(((x + 2 * y) % 256).astype(np.uint8)).convert(mode).save(path)
        split = ("train", "val", "test")[k]
        rows.append(f"{path.stem},{PACKAGE}=1.0,usr/share/{file},CC0-1.0,A,{split},{sha256(path)}")
    chelsea = Path(skimage.__file__).parent / "data" / "chelsea.png"
    rows.append(f"chelsea,skimage,data/chelsea.png,CC0-1.0,S,train,{sha256(chelsea)}")
    monkeypatch.setattr(photos, "MANIFEST", tmp_path / "photos.csv")
    photos.MANIFEST.write_text("\n".join(rows) + "\n")
    calls = []

    def fetch(name, work):
        calls.append(name)
        shutil.copytree(tree, work / "root")
        return work / "root", "1.0"

    fetch.calls, fetch.tree = calls, tree
    return fetch


def test_photos_are_prepared_once_and_load(tmp_path, package):
    dest, log = tmp_path / "data", []
    assert prepare_photos(dest, fetch=package, log=log.append) == 4
    assert package.calls == [PACKAGE]
    for split, name in (("train", "wide"), ("val", "tall"), ("test", "grey"), ("train", "chelsea")):
        with Image.open(dest / "photos" / split / f"{name}.png") as im:
            assert (im.size, im.mode) == ((256, 256), "RGB")
    assert Photos("val", 128, root=dest)[0][1] == "tall@0,0"
    assert not list(dest.rglob("*.tmp"))
    # a second run does nothing, and says so
    assert prepare_photos(dest, fetch=package, log=log.append) == 0
    assert package.calls == [PACKAGE] and "nothing to do" in log[-1]
    # a photo moved to another split: only it is written again, the old file goes
    photos.MANIFEST.write_text(photos.MANIFEST.read_text().replace(",val,", ",test,"))
    assert prepare_photos(dest, fetch=package, log=log.append) == 1
    assert (dest / "photos" / "test" / "tall.png").is_file()
    assert not (dest / "photos" / "val" / "tall.png").exists()


def test_resizing_keeps_the_centre_of_the_shorter_side(tmp_path):
    wide = Image.new("RGB", (600, 300), "red")
    wide.paste(Image.new("RGB", (300, 300), "blue"), (150, 0))
    out = prepare.square(wide)
    assert out.size == (256, 256) and out.getpixel((128, 128)) == (0, 0, 255)
    red = np.asarray(out)[..., 0]
    assert red[:, 1:-1].max() == 0 and red.max() <= 8  # the red margins were cut (Lanczos' edge)


def test_a_changed_source_file_is_named_and_nothing_is_written(tmp_path, package):
    Image.new("RGB", (300, 200), "white").save(package.tree / "usr" / "share" / "wide.jpg")
    dest = tmp_path / "data"
    with pytest.raises(PrepareError, match=r"checksum mismatch: .*wide\.jpg from fake-wallpapers"):
        prepare_photos(dest, fetch=package, log=lambda _: None)
    assert not (dest / "photos" / photos.RECORD).exists()
    with pytest.raises(FileNotFoundError, match="make data"):
        Photos("train", 64, root=dest)


def test_fashion_mnist_files_are_checked_and_copied_once(tmp_path, monkeypatch):
    tree = tmp_path / "package" / fashion_mnist.PACKAGE_DIR
    tree.mkdir(parents=True)
    for k, name in enumerate(fashion_mnist.CHECKSUMS):
        (tree / name).write_bytes(bytes([k]) * 100)
    monkeypatch.setattr(
        fashion_mnist, "CHECKSUMS", {n: sha256(tree / n) for n in fashion_mnist.CHECKSUMS}
    )

    def fetch(name, work):
        assert name == "dataset-fashion-mnist"
        return tmp_path / "package", "0.0-1"

    dest, log = tmp_path / "data", []
    assert prepare_fashion_mnist(dest, fetch=fetch, log=log.append) == 4
    assert sha256(dest / "fashion_mnist" / name) == fashion_mnist.CHECKSUMS[name]
    assert prepare_fashion_mnist(dest, fetch=fetch, log=log.append) == 0
    assert "nothing to do" in log[-1]
    (tree / name).write_bytes(b"changed")
    (dest / "fashion_mnist" / name).unlink()
    with pytest.raises(PrepareError, match=f"checksum mismatch: .*{name} from dataset-fashion"):
        prepare_fashion_mnist(dest, fetch=fetch, log=log.append)


def test_without_apt_the_error_names_the_packages_and_the_way_out(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, no dpkg-deb
    with pytest.raises(PrepareError, match="apt-get and dpkg-deb not found") as info:
        prepare.fetch_debian("mate-backgrounds", tmp_path)
    assert "dataset-fashion-mnist" in str(info.value) and "plasma-workspace" in str(info.value)
    assert "--dest DIR" in str(info.value) and "DCVQ_DATA=DIR" in str(info.value)
    assert prepare.main(["fashion_mnist", "--dest", str(tmp_path / "data")]) == 1
    assert "apt-get and dpkg-deb not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prepare.main(["imagenet"])


def fake_apt_get(bin_dir, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "apt-get").write_text("#!/bin/sh\n" + script)
    (bin_dir / "apt-get").chmod(0o755)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian, Ubuntu)")
def test_fetch_debian_unpacks_what_apt_get_downloads(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "DEBIAN").mkdir(parents=True)
    (src / "usr" / "share").mkdir(parents=True)
    (src / "usr" / "share" / "a.txt").write_text("hello")
    control = "Package: fake\nVersion: 1:2.0-3\nArchitecture: all\nMaintainer: x <x@y>\n"
    (src / "DEBIAN" / "control").write_text(control + "Description: test\n")
    deb = tmp_path / "fake_2.0-3_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(src), str(deb)], check=True, capture_output=True)
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    fake_apt_get(bin_dir, f'cp "{deb}" .\n')
    work = tmp_path / "work"
    work.mkdir()
    root, version = prepare.fetch_debian("fake", work)
    assert version == "1:2.0-3" and (root / "usr" / "share" / "a.txt").read_text() == "hello"
    assert not list(work.glob("*.deb"))
    fake_apt_get(bin_dir, 'echo "E: Failed to fetch http://deb.debian.org/x" >&2\nexit 100\n')
    with pytest.raises(PrepareError, match=r"(?s)exit status 100.*Failed to fetch.*network"):
        prepare.fetch_debian("fake", tmp_path)
