"""One process trains a run directory at a time.

Two jobs of one sweep share a run dir when their configurations differ only in keys that
cannot change results (``dcvq.config.diff.RESULT_NEUTRAL``: run dirs are named by
configuration), and a second launch of a running sweep finds its runs' dirs in use: two
writers of one checkpoint would corrupt each other's run. The lock is ``flock`` on the
directory itself (no lock file to leave behind); the kernel releases it when the process
ends, however it ends, so a requeued or resumed job takes it again at once.

A forked child (a data-loader worker) would share the lock and keep it past its holder's
release: children close the held descriptors right after the fork (``_held``, the one
piece of process state here, exists for that).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dcvq.errors import UserError


class RunDirInUse(UserError):
    """Another process holds the run directory."""


_held: set[int] = set()  # the descriptors of the run dirs this process holds


def _release_in_child() -> None:
    for fd in _held:
        os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_release_in_child)


@contextmanager
def run_dir_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Holds ``run_dir`` (created if missing) for the block; :class:`RunDirInUse` at once
    if another process holds it."""
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirInUse(
                f"{path} is being trained by another process. Two jobs of one sweep share a "
                "run dir when they differ only in keys that cannot change results (logger, "
                "trainer.num_workers, ...: run dirs are named by configuration), or the "
                "sweep is running already; give each job its own configuration or "
                "hydra.sweep.subdir"
            ) from None
        _held.add(fd)
        yield path
    finally:
        _held.discard(fd)
        os.close(fd)  # releases the lock
