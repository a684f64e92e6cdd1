"""``make data``: fetch and prepare the datasets that come from Debian packages.

    python -m dcvq.data.prepare [photos] [fashion_mnist] [--dest DIR]

Both by default, into ``--dest``, else ``$DCVQ_DATA``, else ``~/.cache/dcvq/data``.
Each Debian package is fetched with ``apt-get download`` (no root needed where apt's
package lists exist) and unpacked with ``dpkg-deb -x`` (what ``dpkg -x`` runs) into a
temporary folder, one package at a time; every source file is checked against its
sha256 before it is used. The datasets never download anything: they read what this
wrote, and name this command when it is missing.

* ``photos``: the photographs listed in ``photos.csv`` (scikit-image's from the
  installed package), each converted to RGB, resized once (shorter side to 256, Lanczos)
  and centre-cropped -> ``photos/<split>/<name>.png``; ``photos/prepared.json``, written
  last, records what they were made from.
* ``fashion_mnist``: the four idx files of ``dataset-fashion-mnist`` -> ``fashion_mnist/``.

Every file is written under a temporary name and renamed into place, so an interrupted
run leaves nothing half-written; a second run with everything in place does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from PIL import Image

from dcvq.data import fashion_mnist, photos, store
from dcvq.data.base import load_rgb

#: ``fetch(package, workdir) -> (unpacked root, version)``: how a Debian package is got
Fetch = Callable[[str, Path], tuple[Path, str]]
Log = Callable[[str], None]


class PrepareError(RuntimeError):
    """A preparation step failed; the message names the file or package and the fix."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file(root: Path, file: str, sha256: str, origin: str, listed_in: str) -> None:
    """``origin``'s ``file`` (unpacked under ``root``) exists and has ``sha256``."""
    if not (root / file).is_file():
        raise PrepareError(f"{origin} has no file {file}, which {listed_in} names")
    got = sha256_file(root / file)
    if got != sha256:
        raise PrepareError(
            f"checksum mismatch: {file} from {origin} has sha256 {got}, {listed_in} expects "
            f"{sha256}. The package's file changed: check the new file (content, licence) "
            f"and update {listed_in}, or fetch the version named there."
        )


@contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A file that appears at ``path`` only once fully written (temporary name + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared data dir from others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_debian(package: str, work: Path) -> tuple[Path, str]:
    """``apt-get download`` ``package`` into ``work`` and unpack it there."""
    absent = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if absent:
        needed = [*photos.packages(photos.read_manifest()), fashion_mnist.PACKAGE]
        raise PrepareError(
            f"{' and '.join(absent)} not found: preparing the data needs the Debian packages "
            f"{', '.join(needed)} (this step: {package}), fetched with apt-get. Run "
            "`python -m dcvq.data.prepare --dest DIR` on a Debian or Ubuntu machine that has "
            f"them, copy DIR here and set {store.DATA_ENV}=DIR (or dataset.root=DIR)."
        )
    got = subprocess.run(["apt-get", "download", package], cwd=work, capture_output=True, text=True)
    debs = sorted(work.glob(f"{package}_*.deb"))
    if got.returncode != 0 or len(debs) != 1:
        tail = "\n".join((got.stderr or got.stdout).strip().splitlines()[-5:])
        raise PrepareError(
            f"`apt-get download {package}` failed (exit status {got.returncode}):\n{tail}\n"
            "It needs network access to a Debian mirror and package lists that know "
            f"{package} (Debian 12 bookworm has it; `sudo apt-get update` refreshes them)."
        )
    version = subprocess.run(
        ["dpkg-deb", "-f", str(debs[0]), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    root = work / "root"
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
    debs[0].unlink()  # one package on disk at a time: plasma's is 94 MB
    return root, version


@contextmanager
def _unpacked(package: str | None, fetch: Fetch) -> Iterator[tuple[Path, str]]:
    """(the folder a manifest ``file`` is relative to, that source's name and version)."""
    if package is None:
        import skimage

        yield Path(skimage.__file__).parent, f"scikit-image {skimage.__version__}"
        return
    with tempfile.TemporaryDirectory(prefix="dcvq-data-") as work:
        root, version = fetch(package, Path(work))
        yield root, f"{package} {version}"


def square(img: Image.Image, size: int = photos.SIZE) -> Image.Image:
    """Shorter side resized to ``size`` (Lanczos: antialiased), centre-cropped to a square."""
    w, h = img.size
    scale = size / min(w, h)
    w, h = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((w, h), Image.Resampling.LANCZOS)
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def prepare_photos(dest: Path, fetch: Fetch = fetch_debian, log: Log = print) -> int:
    """Prepare the manifest's photos under ``dest/photos``; returns how many were written."""
    manifest = photos.read_manifest()
    top = dest / "photos"
    wanted = photos.record(manifest)
    try:
        old = json.loads((top / photos.RECORD).read_text())
    except (OSError, ValueError):
        old = {}
    # a photo made from the same source file at the same size, in the same split, stays
    kept = old.get("photos", {}) if isinstance(old, dict) and old.get("size") == photos.SIZE else {}
    todo = [
        p
        for p in manifest
        if kept.get(p.name) != wanted["photos"][p.name]
        or not (top / p.split / f"{p.name}.png").is_file()
    ]
    if not todo and old == wanted:
        log(f"photos: all {len(manifest)} photos are in place in {top}: nothing to do")
        return 0
    for source, package in {p.source: p.package for p in todo}.items():
        start = time.monotonic()
        group = [p for p in todo if p.source == source]
        with _unpacked(package, fetch) as (root, origin):
            for p in group:
                listed_in = f"{photos.MANIFEST} (made from {source})"
                check_file(root, p.file, p.sha256, origin, listed_in)
                image = square(load_rgb(root / p.file))
                with atomic_file(top / p.split / f"{p.name}.png") as f:
                    image.save(f, format="PNG")
        log(f"photos: {len(group)} from {origin} ({time.monotonic() - start:.1f} s)")
    paths = {top / p.split / f"{p.name}.png" for p in manifest}
    for stale in top.glob("*/*.png"):  # a photo dropped from the manifest or moved split
        if stale not in paths:
            stale.unlink()
    with atomic_file(top / photos.RECORD) as f:
        f.write(json.dumps(wanted, indent=1).encode())
    log(f"photos: wrote {len(todo)} of {len(manifest)} photos to {top}")
    return len(todo)


def prepare_fashion_mnist(dest: Path, fetch: Fetch = fetch_debian, log: Log = print) -> int:
    """Copy Fashion-MNIST's idx files to ``dest/fashion_mnist``; returns how many were written."""
    top = dest / "fashion_mnist"
    checksums = fashion_mnist.CHECKSUMS
    todo = [
        n for n, sha in checksums.items() if not (top / n).is_file() or sha256_file(top / n) != sha
    ]
    if not todo:
        log(f"fashion_mnist: all {len(checksums)} files are in place in {top}: nothing to do")
        return 0
    start = time.monotonic()
    with _unpacked(fashion_mnist.PACKAGE, fetch) as (root, origin):
        for name in todo:
            file = f"{fashion_mnist.PACKAGE_DIR}/{name}"
            check_file(root, file, checksums[name], origin, "dcvq/data/fashion_mnist.py")
            with open(root / file, "rb") as fin, atomic_file(top / name) as fout:
                shutil.copyfileobj(fin, fout)
    log(f"fashion_mnist: wrote {len(todo)} files to {top} ({time.monotonic() - start:.1f} s)")
    return len(todo)


DATASETS = {"photos": prepare_photos, "fashion_mnist": prepare_fashion_mnist}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dcvq.data.prepare",
        description="Fetch (apt-get download) and prepare the datasets built from Debian "
        "packages. Idempotent: a second run with everything in place does nothing.",
    )
    parser.add_argument("datasets", nargs="*", metavar="DATASET", help=f"{list(DATASETS)} (all)")
    where = f"data folder (default ${store.DATA_ENV}, else ~/.cache/dcvq/data)"
    parser.add_argument("--dest", help=where)
    args = parser.parse_args(argv)
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset {unknown}: choose from {list(DATASETS)}")
    dest = store.data_dir(args.dest)
    start = time.monotonic()
    try:
        for name in args.datasets or list(DATASETS):
            DATASETS[name](dest)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"data ready in {dest} ({time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
