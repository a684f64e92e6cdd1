"""Where ``make data`` (:mod:`dcvq.data.prepare`) puts the datasets it prepares, and the
error a dataset gives when that has not been done."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "DCVQ_DATA"


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """Where ``make data`` writes (every dataset it prepares): ``root``, else
    ``$DCVQ_DATA``, else ``~/.cache/dcvq/data``."""
    if root:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "dcvq" / "data"


def missing_data(
    dataset: str, path: Path, problem: str, packages: list[str], download: str
) -> FileNotFoundError:
    """The error a dataset prepared by ``make data`` raises when that has not been done."""
    return FileNotFoundError(
        f"{dataset}: {problem} (looked in {path}).\n"
        f"Prepare it once with `make data` (or `python -m dcvq.data.prepare {dataset}`): it "
        f"writes to ${DATA_ENV} (default ~/.cache/dcvq/data) or --dest DIR, and "
        "dataset.root=DIR reads a folder prepared elsewhere. It needs apt-get and dpkg-deb "
        "with Debian's package lists (Debian 12 or later; `apt-get update` once) and network "
        f"access to the Debian mirror: it downloads {download} ({', '.join(packages)}; "
        "about 200 MB for all its datasets)."
    )
