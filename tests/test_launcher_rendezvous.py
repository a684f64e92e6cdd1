"""How the ranks of a Slurm job find each other (dcvq.runtime.distributed): what a task
exports for ``env://`` from Slurm's variables, on one node or several, and the errors for
a rendezvous that cannot work. tests/launch/test_multinode.py runs it on two real nodes."""

from __future__ import annotations

import os
import socket

import pytest

from dcvq.runtime.distributed import (
    RendezvousError,
    export_submitit_env,
    gloo_interface_error,
    init_distributed,
)

EXPORTED = ["MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"]
SLURM = ["SUBMITIT_EXECUTOR", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"]
SLURM += ["SLURM_NTASKS", "SLURM_JOB_NUM_NODES", "SLURM_NODEID", "SLURM_JOB_NODELIST"]
SLURM += ["SLURM_PROCID", "SLURM_LOCALID", "GLOO_SOCKET_IFNAME"]


@pytest.fixture
def clean_env(monkeypatch):
    """No rendezvous variables; whatever a test or the code under test sets is undone."""
    for name in EXPORTED + SLURM:
        monkeypatch.setenv(name, "")  # records the original, so teardown restores it
        monkeypatch.delenv(name)
    return monkeypatch


def task(
    mp, *, node: int, local: int, procid: int, nodes: int = 2, per_node: int = 1, ntasks=None
) -> dict:
    """Exports in the environment of one task of array job 41_3 on nodes gpu[007-008]."""
    for name in EXPORTED:
        mp.delenv(name, raising=False)
    mp.setenv("SUBMITIT_EXECUTOR", "slurm")
    mp.setenv("SLURM_JOB_ID", "42")
    mp.setenv("SLURM_ARRAY_JOB_ID", "41")
    mp.setenv("SLURM_ARRAY_TASK_ID", "3")
    mp.setenv("SLURM_JOB_NODELIST", "gpu[007-008]")
    mp.setenv("SLURM_JOB_NUM_NODES", str(nodes))
    mp.setenv("SLURM_NTASKS", str(ntasks or nodes * per_node))
    mp.setenv("SLURM_NODEID", str(node))
    mp.setenv("SLURM_LOCALID", str(local))
    mp.setenv("SLURM_PROCID", str(procid))
    export_submitit_env()
    return {name: os.environ.get(name) for name in EXPORTED}


@pytest.fixture
def resolvable(monkeypatch):
    """Every name resolves (the test machine knows no gpu007)."""
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(2, 1, 6, "", ("10.0.0.7", 0))])


def test_two_nodes_meet_at_the_first_node_on_a_port_of_the_job(clean_env, resolvable):
    first = task(clean_env, node=0, local=0, procid=0)
    second = task(clean_env, node=1, local=0, procid=1)
    assert first["MASTER_ADDR"] == second["MASTER_ADDR"] == "gpu007"
    assert first["MASTER_PORT"] == second["MASTER_PORT"]  # drawn from the job id 41_3
    assert 20000 <= int(first["MASTER_PORT"]) <= 60000
    assert (first["RANK"], second["RANK"]) == ("0", "1")
    assert first["WORLD_SIZE"] == second["WORLD_SIZE"] == "2"
    assert first["LOCAL_WORLD_SIZE"] == second["LOCAL_WORLD_SIZE"] == "1"
    # a requeued job keeps its id: the same rendezvous
    assert task(clean_env, node=1, local=0, procid=1) == second


def test_global_rank_is_node_times_tasks_plus_local_rank(clean_env, resolvable):
    """Whatever order srun numbered the tasks in (here cyclic: SLURM_PROCID = local x
    nodes + node), rank 0 is on the first node, where MASTER_ADDR points."""
    ranks = {
        (node, local): task(clean_env, node=node, local=local, procid=local * 2 + node,
                            per_node=4)["RANK"]
        for node in (0, 1)
        for local in range(4)
    }  # fmt: skip
    assert ranks == {(n, lr): str(n * 4 + lr) for n in (0, 1) for lr in range(4)}


def test_one_node_needs_no_name_resolution(clean_env, monkeypatch):
    def no_resolver(*args, **kwargs):
        raise AssertionError("resolved a name for a single-node job")

    monkeypatch.setattr(socket, "getaddrinfo", no_resolver)
    exported = task(clean_env, node=0, local=1, procid=1, nodes=1, per_node=2)
    assert (exported["RANK"], exported["WORLD_SIZE"], exported["LOCAL_RANK"]) == ("1", "2", "1")


def test_master_addr_that_does_not_resolve(clean_env, monkeypatch):
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with pytest.raises(RendezvousError, match="MASTER_ADDR .*'gpu007' does not resolve"):
        task(clean_env, node=1, local=0, procid=1)


def test_uneven_tasks_per_node(clean_env, resolvable):
    with pytest.raises(RendezvousError, match="3 tasks on 2 nodes.*tasks_per_node"):
        task(clean_env, node=0, local=0, procid=0, ntasks=3)


def _hostname_resolves_to(monkeypatch, *addrs: str) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "node7")

    def getaddrinfo(host, *args, **kwargs):
        if not addrs:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(2, 1, 6, "", (a, 0)) for a in addrs]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_gloo_across_nodes_needs_a_hostname_off_loopback(clean_env):
    _hostname_resolves_to(clean_env, "127.0.1.1")  # Debian's /etc/hosts line for the host
    error = gloo_interface_error()
    assert "'node7' resolves to 127.0.1.1" in error and "GLOO_SOCKET_IFNAME" in error
    _hostname_resolves_to(clean_env)  # does not resolve: gloo falls back to loopback too
    assert "resolves to nothing" in gloo_interface_error()
    _hostname_resolves_to(clean_env, "10.1.2.3")
    assert gloo_interface_error() is None
    _hostname_resolves_to(clean_env, "127.0.1.1")
    clean_env.setenv("GLOO_SOCKET_IFNAME", "ib0")  # the user chose the interface
    assert gloo_interface_error() is None


def test_gloo_run_across_nodes_stops_before_waiting(clean_env):
    """Before joining the group: a loopback hostname would hang until the timeout."""
    _hostname_resolves_to(clean_env, "127.0.1.1")
    for name, value in (("WORLD_SIZE", "2"), ("LOCAL_WORLD_SIZE", "1"), ("RANK", "1")):
        clean_env.setenv(name, value)
    clean_env.setenv("MASTER_ADDR", "192.0.2.1")  # never contacted
    clean_env.setenv("MASTER_PORT", "29999")
    with pytest.raises(RendezvousError, match="GLOO_SOCKET_IFNAME"):
        init_distributed("cpu", timeout_min=0.1)
