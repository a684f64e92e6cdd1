"""The CPUs a process may use (dcvq.runtime.cpus), read from fake /proc and /sys trees:
affinity, cgroup v2 and v1 quotas (own and parents'), Slurm, torchrun; and the threads
the entry points set from them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dcvq.runtime import cpus

V2_MOUNT = "30 25 0:26 {root} /sys/fs/cgroup rw,nosuid,relatime shared:4 - cgroup2 cgroup2 rw\n"
V1_MOUNT = (
    "35 28 0:31 {root} /sys/fs/cgroup/cpu,cpuacct rw,nosuid,relatime shared:15 - cgroup "
    "cgroup rw,cpu,cpuacct\n"
)
MEMORY_MOUNT = "36 28 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"


def fake_root(tmp_path: Path, mountinfo: str, cgroup: str, files: dict[str, str]) -> Path:
    """A tree with ``proc/self/{mountinfo,cgroup}`` and ``files`` (paths from /)."""
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "mountinfo").write_text(mountinfo)
    (tmp_path / "proc" / "self" / "cgroup").write_text(cgroup)
    for name, text in files.items():
        path = tmp_path / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.fixture
def affinity(monkeypatch):
    """``affinity(n)``: this process may run on n CPUs."""

    def set_cpus(n: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)

    set_cpus(64)
    return set_cpus


@pytest.mark.parametrize(
    ("own", "parent", "limit"),
    [
        ("150000 100000\n", "max 100000\n", 1.5),  # docker --cpus=1.5
        ("max 100000\n", "200000 100000\n", 2.0),  # a parent's quota binds too
        ("400000 100000\n", "100000 50000\n", 2.0),  # the tightest wins
        ("max 100000\n", "max 100000\n", None),
    ],
)
def test_cgroup_v2_quota_of_the_process_and_its_parents(tmp_path, own, parent, limit):
    root = fake_root(
        tmp_path,
        V2_MOUNT.format(root="/"),
        "0::/user.slice/job\n",
        {
            "/sys/fs/cgroup/user.slice/job/cpu.max": own,
            "/sys/fs/cgroup/user.slice/cpu.max": parent,
        },
    )
    assert cpus.cgroup_cpu_limit(root) == limit


def test_cgroup_v2_inside_a_cgroup_namespace(tmp_path):
    """A container sees its own cgroup as the mount's root."""
    root = fake_root(
        tmp_path,
        V2_MOUNT.format(root="/docker/abc"),
        "0::/docker/abc\n",
        {"/sys/fs/cgroup/cpu.max": "300000 100000\n"},
    )
    assert cpus.cgroup_cpu_limit(root) == 3.0


@pytest.mark.parametrize(("quota", "limit"), [("250000", 2.5), ("-1", None)])
def test_cgroup_v1_cfs_quota(tmp_path, quota, limit):
    root = fake_root(
        tmp_path,
        MEMORY_MOUNT + V1_MOUNT.format(root="/"),
        "4:memory:/slurm/job\n3:cpu,cpuacct:/slurm/job\n",
        {
            "/sys/fs/cgroup/cpu,cpuacct/slurm/job/cpu.cfs_quota_us": f"{quota}\n",
            "/sys/fs/cgroup/cpu,cpuacct/slurm/job/cpu.cfs_period_us": "100000\n",
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            # another controller's files are not a CPU limit
            "/sys/fs/cgroup/memory/slurm/job/cpu.cfs_quota_us": "100000\n",
        },
    )
    assert cpus.cgroup_cpu_limit(root) == limit


def test_no_cgroup_files_is_no_limit(tmp_path):
    assert cpus.cgroup_cpu_limit(tmp_path) is None  # no /proc at all (macOS, a sandbox)
    root = fake_root(tmp_path / "r", V2_MOUNT.format(root="/"), "0::/\n", {})
    assert cpus.cgroup_cpu_limit(root) is None  # no cpu.max: the root cgroup


@pytest.mark.parametrize(
    ("n_affinity", "cpu_max", "env", "expected"),
    [
        (64, "max 100000", {}, 64),
        (64, "150000 100000", {}, 2),  # a quota of 1.5 CPUs: rounded up
        (2, "800000 100000", {}, 2),  # the affinity mask is smaller
        (64, "50000 100000", {}, 1),  # never 0
        (128, "max 100000", {"SLURM_CPUS_PER_TASK": "8"}, 8),  # Slurm without binding
        (64, "max 100000", {"TORCHELASTIC_RUN_ID": "x", "LOCAL_WORLD_SIZE": "8"}, 8),
        (64, "1600000 100000", {"TORCHELASTIC_RUN_ID": "x", "LOCAL_WORLD_SIZE": "4"}, 4),
        (4, "max 100000", {"TORCHELASTIC_RUN_ID": "x", "LOCAL_WORLD_SIZE": "8"}, 1),
    ],
)
def test_process_cpus_is_the_smallest_limit(tmp_path, affinity, n_affinity, cpu_max, env, expected):
    affinity(n_affinity)
    root = fake_root(
        tmp_path, V2_MOUNT.format(root="/"), "0::/job\n", {"/sys/fs/cgroup/job/cpu.max": cpu_max}
    )
    assert cpus.process_cpus(env, root) == expected


@pytest.mark.parametrize(("n", "workers", "threads"), [(1, 0, 1), (2, 1, 1), (16, 8, 15)])
def test_workers_and_threads_from_the_count(n, workers, threads):
    assert cpus.auto_workers(n) == workers and cpus.intra_op_threads(n) == threads


@pytest.fixture
def torch_threads():
    """Restores PyTorch's thread count after the test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_configure_threads_sets_them_from_the_cpus(monkeypatch, torch_threads):
    monkeypatch.setattr(cpus, "process_cpus", lambda environ=None, root=None: 3)
    assert cpus.configure_threads({}) == 2
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("variable", cpus.THREAD_VARIABLES)
def test_a_thread_count_the_user_set_wins(monkeypatch, torch_threads, variable):
    monkeypatch.setattr(cpus, "process_cpus", lambda environ=None, root=None: 3)
    torch.set_num_threads(1)
    assert cpus.configure_threads({variable: "1"}) is None
    assert torch.get_num_threads() == 1
