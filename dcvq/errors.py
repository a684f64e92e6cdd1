"""Errors a user fixes, and how the entry points report them.

A :class:`UserError` says what is wrong with what the user asked for (a config key, a
file, a missing download) and how to fix it, so the entry points (``train.py``,
``python -m dcvq.evaluate``, ``python -m dcvq.prior``) print its message alone, with exit
status 1: a traceback only hides it. ``HYDRA_FULL_ERROR=1`` (Hydra's own switch, which
the tests set) shows the traceback. Any other exception is a bug and keeps its
traceback. A run that fails before it wrote anything but Hydra's own files removes its run
directory, whatever the error.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class UserError(Exception):
    """What the user asked for cannot work; the message names the key or file and the fix."""


class ConfigError(UserError, ValueError):
    """A config that composes but cannot work; the message names the keys."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the config names is not there."""


class CheckpointError(UserError, RuntimeError):
    """A file that is not a dcvq checkpoint (corrupt, foreign, or refused by
    ``weights_only=True``)."""


def user_error(error: BaseException) -> UserError | None:
    """``error`` or the UserError behind it: Hydra's ``instantiate`` wraps a constructor's
    exception in its own (the original is the ``__cause__``)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__
    return None


def debugging() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def only_hydra_files(run_dir: Path, job_log: str) -> bool:
    """Whether ``run_dir`` holds nothing but what Hydra writes when a job starts: its
    ``.hydra/`` folder and the job's log."""
    try:
        return all(p.name in (".hydra", job_log) for p in run_dir.iterdir())
    except OSError:
        return False


@contextmanager
def reported(run_dir: Path | None = None, job_log: str = "") -> Iterator[None]:
    """The body of an entry point. On any exception, ``run_dir`` is removed if it holds
    only Hydra's files (never a checkpoint or results); a :class:`UserError` is then
    printed as one paragraph and ends the process with status 1 (``HYDRA_FULL_ERROR=1``:
    raised, with its traceback)."""
    try:
        yield
    except Exception as e:
        if run_dir is not None and only_hydra_files(run_dir, job_log):
            shutil.rmtree(run_dir, ignore_errors=True)
        error = user_error(e)
        if error is None or debugging():
            raise
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank has the error
            print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
