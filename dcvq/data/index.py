"""File listing shared by the dataset layouts: image filters, root checks, cached index.

Listing a large tree (COCO train2014: 82,783 files; ADE20K full: 3,000 folders) is done
once. The result is cached as JSON under ``cache_dir`` (argument, else ``$DCVQ_CACHE/index``,
else ``~/.cache/dcvq/index``), keyed by (resolved root, dataset, split, layout, options).

Invalidation: while listing we record ``st_mtime_ns`` of every directory we read (taken
*before* reading it, so a change during the scan invalidates the entry) and mtime + size
of every metadata file (split lists, ``images.txt``...). Adding, removing or renaming a
file changes the mtime of its directory, so re-checking is one ``stat`` per scanned
directory instead of a walk: COCO is 1 stat, ADE20K's full release about 3,000.
Editing an image in place keeps the cache valid, which is right: the index only holds names.
A listing whose directories changed in the last 2 s is not cached (see ``RACY_NS``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dcvq.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)

INDEX_VERSION = 1
# A directory modified this recently may still change within the same mtime tick (1 s on
# Lustre, NFSv3, HFS+): such a listing is used but not cached ("racy git" problem).
RACY_NS = 2_000_000_000
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
)
JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})


class LayoutError(ConfigError):
    """``dataset.root`` does not hold a layout this dataset knows."""


def is_image(name: str) -> bool:
    """An image file name by extension (case-insensitive), hidden files excluded.

    Hidden files include macOS ``._name.jpg`` resource forks, which tar copies beside
    every image and which no decoder can read.
    """
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def is_jpeg(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in JPEG_SUFFIXES


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$DCVQ_CACHE/index``, else ``~/.cache/dcvq/index``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("DCVQ_CACHE")
    if env:
        return Path(env).expanduser() / "index"
    return Path.home() / ".cache" / "dcvq" / "index"


def resolve_root(root: str | os.PathLike | None, env: str, dataset: str) -> Path:
    """The existing directory named by ``root``, else by ``$env``; a clear error otherwise."""
    if root is None or str(root).strip() in ("", "???"):
        root = os.environ.get(env)
        if not root:
            raise ConfigError(
                f"{dataset}: dataset.root is not set. Pass dataset.root=/path/to/{dataset} "
                f"or set the environment variable {env}."
            )
    path = Path(root).expanduser()
    if not path.is_dir():
        what = "is a file, not a directory" if path.exists() else "does not exist"
        raise MissingFileError(f"{dataset}: dataset.root={str(root)!r} {what}.")
    return path.resolve()


def sample_entries(path: Path, limit: int = 8) -> str:
    """A few entries of ``path`` for error messages (``a/, b.txt, ... (N entries)``)."""
    try:
        with os.scandir(path) as it:
            names = sorted(e.name + ("/" if e.is_dir() else "") for e in it)
    except OSError as e:
        return f"<unreadable: {e}>"
    if not names:
        return "<empty>"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} entries)" if len(names) > limit else "")


def layout_error(dataset: str, root: Path, expected: Iterable[str], hint: str = "") -> LayoutError:
    lines = "\n".join(f"  - {e}" for e in expected)
    msg = (
        f"{dataset}: no known layout under dataset.root={root}.\n"
        f"Expected one of (root may be the dataset's own folder or the folder holding it):\n"
        f"{lines}\nFound in root: {sample_entries(root)}"
    )
    return LayoutError(msg + (f"\n{hint}" if hint else ""))


def check_split(dataset: str, split: str, valid: Iterable[str]) -> str:
    valid = tuple(valid)
    if split not in valid:
        raise ConfigError(
            f"dataset.split={split!r} is not a split of {dataset}: expected one of {valid}"
        )
    return split


def _stamp(path: Path) -> list[int] | None:
    """(mtime_ns, size) of ``path``, or None when it cannot be stat-ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


@dataclass
class Listing:
    """What a layout's ``build`` function fills in: files (relative to ``base``) and the
    directories / metadata files whose change must invalidate the cached list."""

    base: Path
    files: list[str] = field(default_factory=list)
    watched: dict[str, list[int]] = field(default_factory=dict)

    def watch(self, path: Path) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        # directory sizes are filesystem noise; only their mtime tracks entries
        is_dir = stat.S_ISDIR(st.st_mode)
        self.watched[str(path)] = [st.st_mtime_ns] if is_dir else [st.st_mtime_ns, st.st_size]

    def scan(
        self,
        top: Path,
        keep: Callable[[str], bool] = is_image,
        min_depth: int = 0,
        max_depth: int | None = 0,
    ) -> int:
        """Add files under ``top`` whose name passes ``keep``, taken at depths
        ``min_depth..max_depth`` (0 = directly in ``top``; None = unbounded). Hidden
        entries are skipped; symlinked folders are followed once. Returns files added."""
        before = len(self.files)
        seen: set[str] = set()

        def walk(d: str, rel: str, depth: int) -> None:
            real = os.path.realpath(d)
            if real in seen:  # symlink cycle
                return
            seen.add(real)
            self.watch(Path(d))  # before reading: a change during the scan invalidates
            try:
                with os.scandir(d) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                log.warning("cannot list %s (%s): skipped", d, e)
                return
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    continue
                if is_dir:
                    if max_depth is None or depth < max_depth:
                        walk(entry.path, f"{rel}{entry.name}/", depth + 1)
                elif depth >= min_depth and keep(entry.name):
                    self.files.append(rel + entry.name)

        start = Path(top).relative_to(self.base).as_posix()
        walk(os.fspath(top), "" if start == "." else start + "/", 0)
        return len(self.files) - before


def _valid(entry: dict, key: dict) -> bool:
    if entry.get("key") != key:
        return False
    for p, recorded in entry.get("watched", {}).items():
        stamp = _stamp(Path(p))
        if stamp is None or stamp[: len(recorded)] != recorded:
            return False
    return True


def _write_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)  # atomic: readers see the old file or the new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_files(
    key: dict,
    base: Path,
    build: Callable[[Listing], None],
    cache_dir: str | os.PathLike | None = None,
) -> list[str]:
    """Sorted absolute paths (strings: see ``ImageFiles``) of a split's files: from the
    cache when still valid, else ``build`` + store.

    ``key`` must identify the listing (dataset, root, split, layout, options); ``build``
    fills a :class:`Listing` rooted at ``base``. A cache that cannot be read or written
    only costs a re-listing, never an error.
    """
    key = {"version": INDEX_VERSION, "base": str(base), **key}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    slug = "-".join(str(key.get(k, "")) for k in ("dataset", "split")).lower()
    path = default_cache_dir(cache_dir) / f"{slug}-{digest}.json"
    try:
        entry = json.loads(path.read_text())
        if isinstance(entry, dict) and _valid(entry, key):
            return _absolute(base, entry["files"])
        log.info("file index %s is stale: listing %s again", path, base)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable file index %s (%s)", path, e)
    listing = Listing(base)
    build(listing)
    files = sorted(set(listing.files))
    now = time.time_ns()
    if any(stamp[0] > now - RACY_NS for stamp in listing.watched.values()):
        log.debug("%s changed in the last seconds: file index not cached", base)
        return _absolute(base, files)
    try:
        _write_atomic(path, {"key": key, "watched": listing.watched, "files": files})
    except OSError as e:
        log.warning("could not write the file index %s (%s): listing again next time", path, e)
    return _absolute(base, files)


def _absolute(base: Path, files: list[str]) -> list[str]:
    prefix = os.path.join(os.fspath(base), "")
    return [prefix + f.replace("/", os.sep) for f in files]
