"""Processes by their ``/proc`` stat (Linux): the shared checks of the signal and Slurm
tests that no loader worker or child outlives its parent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def _stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, the stat fields after the command name: state, ppid, pgrp, ...) of each."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            yield int(stat.parent.name), stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue


def group_alive(pgid: int) -> list[int]:
    """The pids of the live (not zombie) processes of process group ``pgid``."""
    return [pid for pid, f in _stats() if int(f[2]) == pgid and f[0] != "Z"]


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s children (zombies too)."""
    return [child for child, f in _stats() if int(f[1]) == pid]
