"""Fetch the pretrained weights the metrics need, once, on a machine with network.

``python -m dcvq.weights [--dest DIR]`` downloads torchvision's VGG16 (LPIPS backbone)
and torch-fidelity's Inception (FID) into ``DIR/hub/checkpoints/`` (default: this
machine's torch hub cache), checks their SHA-256 and skips files already present and
valid. Compute nodes without network then find them through ``TORCH_HOME=DIR``.
Nothing in dcvq downloads at run time: the loaders only read these files.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import sys
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dcvq.errors import UserError

# What a download raises when the network is not there or breaks off (not a full disk).
NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException)


@dataclass(frozen=True)
class WeightFile:
    name: str  # file name in the hub cache, as the libraries look it up
    url: str
    sha256: str  # of the whole file; torch hub names carry its first 8 hex digits
    used_for: str


VGG16 = WeightFile(
    "vgg16-397923af.pth",
    "https://download.pytorch.org/models/vgg16-397923af.pth",
    "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
    "LPIPS (loss and metric)",
)
# URL as in torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3 (a test keeps
# them in sync). Its suffix follows the torch hub convention: a SHA-256 prefix.
INCEPTION = WeightFile(
    "weights-inception-2015-12-05-6726825d.pth",
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth",
    "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    "FID (torch-fidelity InceptionV3)",
)
ALL = (VGG16, INCEPTION)


def checkpoints_dir(dest: str | os.PathLike | None = None) -> Path:
    """``DEST/hub/checkpoints`` (DEST plays TORCH_HOME), or the current torch hub cache."""
    if dest is None:
        return Path(torch.hub.get_dir()) / "checkpoints"
    return Path(dest).expanduser() / "hub" / "checkpoints"


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_valid(path: Path, spec: WeightFile) -> bool:
    return path.is_file() and sha256_of(path) == spec.sha256


def is_official(path: str | os.PathLike, spec: WeightFile) -> bool:
    """Whether ``path`` is byte-identical to the published file."""
    return sha256_of(Path(path)) == spec.sha256


class OfflineError(UserError):
    """A download failed for want of network: say where to run it instead."""


def offline_message(url: str, error: Exception, dest: str | os.PathLike | None) -> str:
    reason = getattr(error, "reason", None) or error
    home = checkpoints_dir(dest).parent.parent  # plays TORCH_HOME
    return (
        f"cannot download {url} ({reason}): this machine has no network access to it. Run "
        "`make weights` on a machine with network, then copy its $TORCH_HOME/hub folder "
        f"(here it would be {home / 'hub'}) to this machine and set TORCH_HOME to the folder "
        "that holds it; `make weights DEST=DIR` writes DIR/hub instead."
    )


def _download(url: str, dst: Path) -> None:
    # torch's own downloader: writes a temp file and moves it into place.
    torch.hub.download_url_to_file(url, str(dst), progress=True)


def fetch(
    dest: str | os.PathLike | None = None,
    files: Sequence[WeightFile] | None = None,
    download: Callable[[str, Path], None] | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Make every file in ``files`` present and valid under :func:`checkpoints_dir`.

    A valid file is kept; an invalid one is replaced. A download whose hash does not
    match is deleted and raises, so a broken file is never left where loaders look.
    """
    # defaults looked up at call time, so tests can replace them on the module
    files = ALL if files is None else files
    download = _download if download is None else download
    folder = checkpoints_dir(dest)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in files:
        path = folder / spec.name
        if is_valid(path, spec):
            log(f"ok       {path} (sha256 verified)")
        else:
            if path.exists():
                log(f"invalid  {path}: hash mismatch, downloading again")
            log(f"download {spec.url}")
            tmp = path.with_name(path.name + ".part")
            try:
                download(spec.url, tmp)
                got = sha256_of(tmp)
                if got != spec.sha256:
                    raise RuntimeError(
                        f"{spec.url} downloaded with sha256 {got}, expected {spec.sha256}: "
                        "the file is corrupt or was changed upstream; nothing was installed"
                    )
                os.replace(tmp, path)
            except NETWORK_ERRORS as e:
                raise OfflineError(offline_message(spec.url, e, dest)) from e
            finally:
                tmp.unlink(missing_ok=True)
            log(f"ok       {path} (sha256 verified)")
        paths.append(path)
    return paths


def missing_for(eval_cfg: Any) -> dict[str, str]:
    """``{metric: why}`` for the metrics an ``eval`` node turns on whose weight file is
    absent, when ``eval.missing_weights=skip``; ``{}`` otherwise (``error``: the metric's
    loader then fails with instructions). Only absence is skipped: a corrupt or refused
    file still fails."""
    if eval_cfg.get("missing_weights", "error") != "skip":
        return {}
    wanted = [
        ("fid", eval_cfg.fid, eval_cfg.fid_weights, INCEPTION, "Inception", "eval.fid_weights"),
        ("lpips", eval_cfg.lpips, eval_cfg.lpips_weights, VGG16, "VGG16", "eval.lpips_weights"),
    ]
    missing = {}
    for metric, on, given, spec, name, key in wanted:
        path = Path(given).expanduser() if given else checkpoints_dir() / spec.name
        if on and not path.is_file():
            where = f"{key}={given}" if given else str(path)
            missing[metric] = f"no {name} weights at {where}"
    return missing


def usage_hint(dest: str | os.PathLike | None) -> str:
    home = Path(dest).expanduser().resolve() if dest else checkpoints_dir().parent.parent
    return (
        f"Weights are in {checkpoints_dir(dest)}.\n"
        "On compute nodes without network, make this folder visible (shared filesystem or "
        f"a copy) and run with\n    export TORCH_HOME={home}\n"
        "or point at the files directly: loss.lpips_weights=PATH / eval.lpips_weights=PATH "
        "(VGG16) and eval.fid_weights=PATH (Inception)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dcvq.weights",
        description="Download and verify the VGG16 (LPIPS) and Inception (FID) weights.",
    )
    parser.add_argument(
        "--dest",
        help="folder used as TORCH_HOME: files go to DEST/hub/checkpoints "
        "(default: this machine's torch hub cache)",
    )
    args = parser.parse_args(argv)
    try:
        fetch(args.dest)
    except Exception as e:  # network or hash failure: one clear line, non-zero exit
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(usage_hint(args.dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
