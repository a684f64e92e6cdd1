"""The CPUs this process may use, and the intra-op threads and loader workers that fit.

PyTorch sizes its thread pool from the CPUs it can see, not from those it may use: a
container limited by a cgroup quota sees the host's cores, a Slurm task on a cluster that
does not bind CPUs sees the whole node, and torchrun's ranks each see the machine. An
OpenMP team with more threads than free CPUs waits at every barrier for a thread that is
not running: on 2 cores shared with one other CPU-bound process, 40 steps of
``experiment=demo`` took 32 s with PyTorch's 2 threads and 16 s with one (idle: 9-10 s
either way), and 4 s a step against 0.6 on a busier machine.

The count is the smallest of the affinity mask, the cgroup CPU quota (v2 ``cpu.max``,
v1 ``cpu.cfs_quota_us``, this cgroup and its parents) and ``SLURM_CPUS_PER_TASK``,
shared by torchrun's ranks on the machine. The entry points call :func:`configure_threads`
first; an ``OMP_NUM_THREADS`` the user set is kept, and code that imports dcvq as a
library keeps PyTorch's threads as they are.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# `num_workers: auto` never starts more loader workers than this per process.
AUTO_MAX_WORKERS = 8
# Variables that set the thread count before dcvq runs: the user's choice wins.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def affinity_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _mounts(root: Path) -> list[tuple[str, str, str, list[str]]]:
    """``(mount root, mount point, fs type, super options)`` of the cgroup file systems."""
    try:
        lines = (root / "proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        fields, _, tail = line.partition(" - ")
        parts, rest = fields.split(), tail.split()
        if len(parts) >= 5 and len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
            mounts.append((parts[3], parts[4], rest[0], rest[2].split(",")))
    return mounts


def _cgroup_dirs(root: Path) -> list[tuple[str, Path, Path]]:
    """``(fs type, this process's cgroup dir, mount point)`` for the CPU controller: the
    v2 hierarchy and the v1 ``cpu`` one, where mounted."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    paths = {}  # "cgroup2" -> path, "cgroup" -> the v1 cpu controller's path
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            paths["cgroup2"] = path
        elif "cpu" in controllers.split(","):
            paths["cgroup"] = path
    dirs = []
    for mount_root, point, fstype, options in _mounts(root):
        path = paths.get(fstype)
        if path is None or (fstype == "cgroup" and "cpu" not in options):
            continue
        # inside a cgroup namespace the path is relative to the mount's root
        if mount_root != "/" and (path + "/").startswith(mount_root.rstrip("/") + "/"):
            path = path[len(mount_root.rstrip("/")) :]
        top = root / point.lstrip("/")
        dirs.append((fstype, top / path.lstrip("/"), top))
    return dirs


def _quota(fstype: str, folder: Path) -> float | None:
    """CPUs the cgroup ``folder`` may use (quota / period), or None: no limit there."""
    try:
        if fstype == "cgroup2":
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            if quota == "max":
                return None
        else:
            quota = (folder / "cpu.cfs_quota_us").read_text().strip()
            period = (folder / "cpu.cfs_period_us").read_text().strip()
            if int(quota) < 0:
                return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        return None


def cgroup_cpu_limit(root: Path = Path("/")) -> float | None:
    """The tightest CPU quota on this process's cgroups (its own and its parents', v2 and
    v1), in CPUs; None when there is none. ``root``: where /proc and /sys are (tests)."""
    limits = []
    for fstype, folder, top in _cgroup_dirs(root):
        while True:
            quota = _quota(fstype, folder)
            if quota is not None:
                limits.append(quota)
            if folder == top or top not in folder.parents:
                break
            folder = folder.parent
    return min(limits) if limits else None


def process_cpus(environ: Mapping[str, str] | None = None, root: Path = Path("/")) -> int:
    """The CPUs this process may use: the affinity mask, the cgroup quota (rounded up) and
    a Slurm task's ``--cpus-per-task`` (its CPU set may be the whole node where the
    cluster does not bind tasks), whichever is smallest; under torchrun, the ranks of a
    machine share them."""
    environ = os.environ if environ is None else environ
    cpus = affinity_cpus()
    quota = cgroup_cpu_limit(root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    if environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        cpus = min(cpus, int(environ["SLURM_CPUS_PER_TASK"]))
    if "TORCHELASTIC_RUN_ID" in environ and environ.get("LOCAL_WORLD_SIZE", "").isdigit():
        cpus //= max(1, int(environ["LOCAL_WORLD_SIZE"]))
    return max(1, cpus)


def auto_workers(cpus: int) -> int:
    """Loader workers for ``num_workers: auto``: one CPU for the main process, the rest
    (at most AUTO_MAX_WORKERS) for workers; none on one CPU."""
    return max(0, min(AUTO_MAX_WORKERS, cpus - 1))


def intra_op_threads(cpus: int) -> int:
    """Every CPU but one: a team that needs every CPU stalls whenever anything else runs
    (a shell, the loader workers, another job), while one thread fewer costs at most
    1/cpus when the machine is idle (on 2 cores: nothing measurable for the demo)."""
    return max(1, cpus - 1)


def configure_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """Set PyTorch's intra-op threads for this process's CPUs, as the entry points do
    first. Returns the count, or None where ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` is
    set: PyTorch has read it and it stays."""
    environ = os.environ if environ is None else environ
    given = [f"{name}={environ[name]}" for name in THREAD_VARIABLES if environ.get(name)]
    if given:
        log.debug("intra-op threads: %d (%s)", torch.get_num_threads(), ", ".join(given))
        return None
    cpus = process_cpus(environ)
    threads = intra_op_threads(cpus)
    torch.set_num_threads(threads)
    log.debug(
        "intra-op threads: %d of the %d CPUs this process may use (OMP_NUM_THREADS=N to change)",
        threads,
        cpus,
    )
    return threads
