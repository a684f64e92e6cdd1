"""What is left of a process group (Linux ``/proc``): the shared check of the signal
tests that no loader worker or child outlives its training process."""

from __future__ import annotations

from pathlib import Path


def group_alive(pgid: int) -> list[int]:
    """The pids of the live (not zombie) processes of process group ``pgid``."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids
