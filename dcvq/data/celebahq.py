"""CelebA-HQ faces (30,000 images, 1024x1024 in CelebAMask-HQ).

Layouts, detected in this order (``root`` may be the named folder or the one holding it):

- ``vqct``: VQCT's copy, ``{train,test}/filenames.pickle`` + ``images/<name>.jpg``.
  Splits ``train`` / ``test``. The pickles are read by a restricted unpickler that only
  builds plain lists/tuples of strings or integers and refuses any class or function, so
  a tampered file cannot run code; anything else is refused with a message saying how
  to convert it to a text list for ``split_file``.
- ``celebamask``: CelebAMask-HQ, ``CelebAMask-HQ/CelebA-HQ-img/{0..29999}.jpg``, split by
  taming's lists ``celebahqtrain.txt`` (25,000) / ``celebahqvalidation.txt`` (5,000),
  looked up beside ``CelebA-HQ-img/``, in ``root`` and in the folder holding
  ``CelebAMask-HQ/``, or given as ``split_file``. Splits ``train`` / ``val``.
  List entries: taming's original lists name ``<celeba_file>.npy`` (the 1-based CelebA
  file, e.g. ``119614.npy``), mapped to CelebA-HQ indices through CelebAMask-HQ's
  ``CelebA-HQ-to-CelebA-mapping.txt``; any other numeric entry (``6053``, ``6053.jpg``,
  ``path/to/06053.jpg``) is a CelebA-HQ index; other entries name a file in
  ``CelebA-HQ-img/``. Only the first comma/space-separated field of a line counts.
- ``folders``: plain ``train/``, ``val/`` (or ``validation/``), ``test/`` folders of images.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path

from dcvq.data.base import ListedImages
from dcvq.data.index import (
    IMAGE_SUFFIXES,
    Listing,
    cached_files,
    check_split,
    is_image,
    layout_error,
)
from dcvq.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)
Builder = Callable[[Listing], None]

SPLITS = ("train", "val", "test")
LIST_NAMES = {"train": "celebahqtrain.txt", "val": "celebahqvalidation.txt"}
MAPPING_NAME = "CelebA-HQ-to-CelebA-mapping.txt"
FOLDER_NAMES = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}
MAX_PICKLE_BYTES = 64 << 20  # 30k names take ~0.5 MB; refuse anything absurd
EXPECTED = [
    "train|test/filenames.pickle + images/ (VQCT's copy)",
    "CelebAMask-HQ/CelebA-HQ-img/{0..29999}.jpg + taming's celebahqtrain.txt / "
    "celebahqvalidation.txt",
    "train/, val/ (or validation/), test/ folders of images",
]


class _NamesUnpickler(pickle.Unpickler):
    """Unpickles plain containers of str/bytes/int only: every global (class, function,
    numpy array) goes through ``find_class``, which refuses, so no code can run."""

    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("refusing persistent ids")


def read_names_pickle(path: Path) -> list[str]:
    """VQCT's ``filenames.pickle`` (a list of image names), read without running code."""
    size = path.stat().st_size
    if size > MAX_PICKLE_BYTES:
        raise ValueError(f"{path}: {size} bytes is too large for a list of file names")
    fix = (
        "It must hold a plain list of image names. Convert it on a trusted machine: "
        "python -c \"import pickle,sys; print('\\n'.join(map(str, "
        "pickle.load(open(sys.argv[1], 'rb')))))\" filenames.pickle > filenames.txt; "
        "then pass that file as dataset.split_file."
    )
    try:
        data = _NamesUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as e:  # any unpickling failure: say why and how to fix it
        raise ValueError(f"{path}: refused ({e}). {fix}") from e
    if not isinstance(data, list | tuple):
        raise ValueError(f"{path}: holds a {type(data).__name__}, not a list of names. {fix}")
    names = []
    for item in data:
        if isinstance(item, bytes):
            item = item.decode("utf-8")
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str):
            raise ValueError(f"{path}: holds a {type(item).__name__} entry, not a name. {fix}")
        names.append(item)
    return names


def read_list_file(path: Path) -> list[str]:
    """A split list: one entry per line, first comma/space field; ``#`` comments skipped."""
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(re.split(r"[,\s]", line, maxsplit=1)[0])
    return out


def read_mapping(path: Path) -> dict[int, int]:
    """CelebAMask-HQ's ``idx orig_idx orig_file`` table -> ``{celeba file number: hq idx}``."""
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines or lines[0][:1] != ["idx"] or "orig_file" not in lines[0]:
        raise ValueError(f"{path}: expected a header 'idx orig_idx orig_file'")
    col = lines[0].index("orig_file")
    return {int(Path(row[col]).stem): int(row[0]) for row in lines[1:]}


def _index_of(entry: str) -> int | None:
    stem = Path(entry.replace("\\", "/")).stem
    return int(stem) if stem.isdigit() else None


def find_vqct(root: Path) -> Path | None:
    for base in (root, root / "celehq", root / "celebahq"):
        has_pickle = any((base / s / "filenames.pickle").is_file() for s in ("train", "test"))
        if has_pickle and (base / "images").is_dir():
            return base
    return None


def find_celebamask(root: Path) -> Path | None:
    """The folder holding ``CelebA-HQ-img/``."""
    if root.name == "CelebA-HQ-img":
        return root.parent
    for base in (root, root / "CelebAMask-HQ"):
        if (base / "CelebA-HQ-img").is_dir():
            return base
    return None


def find_folders(root: Path) -> dict[str, Path]:
    for base in (root, root / "celebahq", root / "CelebA-HQ"):
        found = {}
        for split, names in FOLDER_NAMES.items():
            for name in names:
                if (base / name).is_dir():
                    found[split] = base / name
                    break
        if found:
            return found
    return {}


class CelebAHQ(ListedImages):
    """CelebA-HQ images. ``split``: ``train`` | ``val`` | ``test`` as the layout has them.

    ``split_file``: a text list (one name per line) for the chosen split, overriding
    taming's lists (``celebamask``) or VQCT's pickles (``vqct``; names resolved in
    ``images/`` as VQCT does, ``.jpg`` appended when they have no extension).
    ``layout``: ``vqct`` | ``celebamask`` | ``folders`` | None (detect).
    """

    NAME, ENV, SPLITS = "CelebA-HQ", "DCVQ_CELEBAHQ_ROOT", SPLITS

    def list_files(
        self,
        root: Path,
        split: str,
        cache_dir: str | os.PathLike | None,
        split_file: str | os.PathLike | None = None,
        layout: str | None = None,
    ) -> tuple[list[str], Path, str]:
        detectors = {
            "vqct": lambda: find_vqct(root),
            "celebamask": lambda: find_celebamask(root),
            "folders": lambda: find_folders(root) or None,
        }
        if layout is not None and layout not in detectors:
            raise ConfigError(
                f"dataset.layout={layout!r}: CelebA-HQ layouts are {tuple(detectors)}"
            )
        if layout is not None:
            order = [layout]
        else:  # a split list needs a folder of all images: not the split-folders layout
            order = ["vqct", "celebamask"] if split_file is not None else list(detectors)
        found = None
        for name in order:
            found = detectors[name]()
            if found is not None:
                layout = name
                break
        if found is None:
            hint = f"(dataset.layout={layout})" if layout else ""
            raise layout_error("CelebA-HQ", root, EXPECTED, hint)
        if split_file is not None and layout == "folders":
            raise ConfigError(
                f"CelebA-HQ: dataset.split_file applies to a folder of all images (VQCT's "
                f"images/ or CelebAMask-HQ's CelebA-HQ-img/), but dataset.root={root} "
                f"has the train/val/test folders layout"
            )
        list_path = None
        if split_file is not None:
            list_path = Path(split_file).expanduser()
            if not list_path.is_file():
                raise MissingFileError(f"CelebA-HQ: dataset.split_file={split_file} not found")

        if layout == "vqct":
            top, build = self._vqct(found, split, list_path)
        elif layout == "celebamask":
            top, build = self._celebamask(root, found, split, list_path)
        else:
            check_split("CelebA-HQ (train/val/test folders)", split, found)
            folder = found[split]
            top = folder.parent

            def build(listing: Listing) -> None:
                listing.scan(folder, keep=is_image, max_depth=None)

        key = {"dataset": "celebahq", "split": split, "layout": layout}
        if split_file is not None:
            key["split_file"] = str(Path(split_file).expanduser().resolve())
        files = cached_files(key, top, build, cache_dir)
        if not files:
            raise layout_error("CelebA-HQ", root, EXPECTED, f"No images for split={split}.")
        return files, top, layout

    @staticmethod
    def _vqct(base: Path, split: str, list_path: Path | None) -> tuple[Path, Builder]:
        if list_path is None:
            splits = [s for s in ("train", "test") if (base / s / "filenames.pickle").is_file()]
            check_split("CelebA-HQ (VQCT layout)", split, splits)
        source = list_path or base / split / "filenames.pickle"

        def build(listing: Listing) -> None:
            listing.watch(source)
            names = read_list_file(source) if list_path else read_names_pickle(source)
            # VQCT appends .jpg to every name; keep names that already carry an extension
            rel = [
                n if os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES else f"{n}.jpg" for n in names
            ]
            _add_listed(listing, base / "images", rel, str(source))

        return base, build

    @staticmethod
    def _celebamask(
        root: Path, base: Path, split: str, list_path: Path | None
    ) -> tuple[Path, Builder]:
        images = base / "CelebA-HQ-img"
        if list_path is None:
            check_split("CelebA-HQ (CelebAMask-HQ with taming's lists)", split, LIST_NAMES)
            places = dict.fromkeys([base, root, base.parent, images])  # ordered, unique
            candidates = [d / LIST_NAMES[split] for d in places]
            list_path = next((p for p in candidates if p.is_file()), None)
            if list_path is None:
                raise MissingFileError(
                    f"CelebA-HQ: the CelebAMask-HQ layout needs taming's split list "
                    f"{LIST_NAMES[split]} (taming-transformers, data/{LIST_NAMES[split]}); "
                    f"put it in {base} or pass dataset.split_file=/path/to/list. "
                    f"Looked for: {', '.join(map(str, candidates))}"
                )
        mapping_path = base / MAPPING_NAME

        def build(listing: Listing) -> None:
            listing.watch(list_path)
            entries = read_list_file(list_path)
            if any(e.lower().endswith(".npy") for e in entries):
                # taming's own lists: CelebA file numbers of its .npy copies
                if not mapping_path.is_file():
                    raise MissingFileError(
                        f"CelebA-HQ: {list_path} names CelebA files (*.npy, taming's format); "
                        f"mapping them to CelebA-HQ-img/ needs {MAPPING_NAME}, shipped with "
                        f"CelebAMask-HQ, in {base}"
                    )
                listing.watch(mapping_path)
                mapping = read_mapping(mapping_path)
                hq = []
                for e in entries:
                    number = _index_of(e)
                    if number is None or number not in mapping:
                        raise ValueError(f"{list_path}: {e!r} is not a CelebA-HQ image")
                    hq.append(mapping[number])
            else:
                hq = [_index_of(e) for e in entries]
            present = Listing(images)
            present.scan(images, keep=is_image, max_depth=0)
            listing.watched.update(present.watched)
            by_index = {_index_of(f): f for f in present.files}
            rel = []
            for e, i in zip(entries, hq, strict=True):
                if i is None:  # a non-numeric name: a file in CelebA-HQ-img/
                    rel.append(Path(e).name)
                else:
                    rel.append(by_index.get(i, f"{i}.jpg"))
            _add_listed(listing, images, rel, str(list_path), present=set(present.files))

        return base, build


def _add_listed(
    listing: Listing, folder: Path, rel: list[str], source: str, present: set[str] | None = None
) -> None:
    """Add ``folder/<rel>`` files named by a list. Missing ones stay in the list (reported
    as skipped by name at load); none present at all is a layout error."""
    unsafe = [r for r in rel if Path(r).is_absolute() or ".." in Path(r).parts]
    if unsafe:
        raise ValueError(f"{source}: names must stay inside {folder}, got {unsafe[:3]}")
    if present is None:
        scan = Listing(folder)
        scan.scan(folder, keep=is_image, max_depth=0)
        listing.watched.update(scan.watched)
        present = set(scan.files)
    missing = [r for r in rel if r not in present]
    if rel and len(missing) == len(rel):
        raise ValueError(
            f"CelebA-HQ: none of the {len(rel)} images listed in {source} exist in {folder} "
            f"(e.g. {missing[:3]}); found there: {sorted(present)[:5]}"
        )
    if missing:
        log.warning(
            "CelebA-HQ: %d images listed in %s are missing from %s (e.g. %s)",
            len(missing),
            source,
            folder,
            missing[:5],
        )
    listing.files.extend((folder / r).relative_to(listing.base).as_posix() for r in rel)
