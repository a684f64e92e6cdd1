"""Checkpoints: written atomically, read with ``weights_only=True``; and the run's
result files (``eval.json``), written atomically too.

Written by the training loop (``dcvq.trainer``), read by it to resume and by
``dcvq.build.load_model`` and ``python -m dcvq.evaluate``: a module below all three.

Everything stored is a tensor or a plain Python value (config as YAML text, RNG states
as tensors), so loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from dcvq.errors import CheckpointError, MissingFileError

FORMAT = "dcvq-checkpoint-1"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write to a temp file in the same directory, fsync, then rename over ``path`` and
    fsync the directory: a crash mid-write leaves the previous checkpoint intact. Temp
    files of a writer killed mid-write (SIGKILL: no cleanup) are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    """``path`` appears whole or not at all (a signal or crash mid-write leaves no
    truncated file that would read as a finished result)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """``mmap=True``: tensors are mapped, not read, so a look at the config or step of a
    large checkpoint costs next to nothing. A path that is no dcvq checkpoint raises one
    error that names the file and says why."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(_not_a_file(path))
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # torch's own paragraphs stay out of the traceback (in __context__)
        raise CheckpointError(_unreadable(path, e)) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dcvq checkpoint (expected format {FORMAT!r})")
    return state


def _not_a_file(path: Path) -> str:
    if not path.is_dir():
        return f"checkpoint {path} does not exist"
    inside = [p for p in (path / "checkpoints" / "last.pt", path / "last.pt") if p.is_file()]
    if inside:  # a run directory, or its checkpoints/ folder
        return f"checkpoint {path} is a directory; the checkpoint in it is {inside[0]}"
    return f"checkpoint {path} is a directory, with no checkpoints/last.pt or last.pt in it"


def _unreadable(path: Path, error: Exception) -> str:
    """Why torch cannot load ``path``, in one sentence rather than torch's paragraphs."""
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives
        return (
            f"checkpoint {path} is not a PyTorch file: its {path.stat().st_size} bytes are not "
            "the zip archive torch.save writes (another format, or a copy cut short)"
        )
    why = re.search(r"WeightsUnpickler error: ([^\n]*?)(\. Please|\n|$)", str(error))
    detail = why.group(1) if why else f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return (
        f"cannot load {path} as a dcvq checkpoint with weights_only=True ({detail}). It is "
        "corrupt or was not written by dcvq; dcvq never unpickles other files."
    )


def rng_state(device: torch.device) -> dict[str, Any]:
    """The CPU generator and, on CUDA, the training device's generator. Every rank runs
    the same seed and the same random ops (identical dropout masks), so rank 0's state
    is every rank's, and a checkpoint resumes on any number of GPUs."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if device.type == "cuda" and cuda is not None:
        if isinstance(cuda, list):  # older checkpoints: one state per visible device
            cuda = cuda[0]
        torch.cuda.set_rng_state(cuda, device)
