"""The local Slurm (launch/local_slurm.sh) behaves like a real cluster: on one node, and
on several (`up --nodes N`), each node in its own network namespace."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import submitit
from processes import children


def _running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_node_and_partition(local_slurm):
    out = local_slurm.run("sinfo", "-h", "-N", "-o", "%N %P %t %c %G").stdout.split()
    assert out == ["localhost", "debug*", "idle", str(os.cpu_count()), "gpu:1"], out
    # Loopback only: clients reach the controller at 127.0.0.1.
    conf = local_slurm.conf.read_text()
    assert "SlurmctldHost=localhost(127.0.0.1)" in conf
    assert "NodeAddr=127.0.0.1" in conf


def test_sbatch_wrap_completes_and_output_is_read_back(local_slurm, tmp_path):
    out = tmp_path / "hello-%j.out"
    job_id, states = local_slurm.sbatch(
        f"--output={out}",
        "--wrap", "echo hello $((6 * 7)) from job $SLURM_JOB_ID on $SLURM_JOB_PARTITION",
        cwd=tmp_path,
    )  # fmt: skip
    assert states == ["COMPLETED"]
    text = (tmp_path / f"hello-{job_id}.out").read_text()
    assert text.strip() == f"hello 42 from job {job_id} on debug"


def test_job_array_of_two_tasks(local_slurm, tmp_path):
    array_id, states = local_slurm.sbatch(
        "--array=0-1", f"--output={tmp_path}/arr-%A_%a.out",
        "--wrap", "echo task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT",
        cwd=tmp_path,
    )  # fmt: skip
    assert states == ["COMPLETED", "COMPLETED"]
    for task in (0, 1):
        text = (tmp_path / f"arr-{array_id}_{task}.out").read_text()
        assert text.strip() == f"task {task} of 2"


def test_gpus_per_node_uses_the_stand_in_gres(local_slurm, tmp_path):
    job_id, states = local_slurm.sbatch(
        "--gpus-per-node=1", f"--output={tmp_path}/gpu-%j.out",
        "--wrap", "echo gpus=$SLURM_GPUS_ON_NODE",
        cwd=tmp_path,
    )  # fmt: skip
    assert states == ["COMPLETED"]
    assert (tmp_path / f"gpu-{job_id}.out").read_text().strip() == "gpus=1"
    # The node has one (stand-in) GPU: asking for two is refused at submission.
    too_many = local_slurm.run(
        "sbatch", "--gpus-per-node=2", "--wrap", "true", cwd=tmp_path, check=False
    )
    assert too_many.returncode != 0
    assert "not available" in too_many.stderr or "Invalid" in too_many.stderr


def test_submitit_auto_executor_runs_a_function(local_slurm, tmp_path):
    def where_am_i(x: int) -> tuple[int, str, str]:
        import os  # runs in the Slurm job

        return x * 2, os.environ["SLURM_JOB_ID"], os.environ["SLURM_JOB_PARTITION"]

    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(
        slurm_partition="debug", timeout_min=5, cpus_per_task=1, mem_gb=1, name="dcvq-test"
    )
    job = executor.submit(where_am_i, 21)
    value, job_id, partition = job.result()
    assert (value, job_id, partition) == (42, str(job.job_id), "debug")


def test_up_is_idempotent_and_down_leaves_no_daemons(make_local_slurm):
    cluster = make_local_slurm()
    pids = cluster.daemon_pids()
    assert set(pids) == {"munged", "slurmctld", "slurmd"}
    assert all(_running(p) for p in pids.values())
    helpers = children(pids["slurmctld"])  # slurmscriptd

    again = cluster.script("up")
    assert again.returncode == 0, again.stderr
    assert cluster.daemon_pids() == pids, "a second `up` must reuse the running daemons"
    assert cluster.script("status").returncode == 0

    # A job still running at `down` is cancelled, not left behind: it writes the pids of its
    # shell and of its slurmstepd (the parent), then sleeps.
    job_pids = cluster.dir / "job.pids"
    cluster.run(
        "sbatch", "--output=/dev/null",
        "--wrap", f"echo $$ $PPID > {job_pids}.tmp && mv {job_pids}.tmp {job_pids}; sleep 300",
        cwd=cluster.dir,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not job_pids.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    started = [int(p) for p in job_pids.read_text().split()]
    assert all(_running(p) for p in started)

    down = cluster.script("down", timeout=120)
    assert down.returncode == 0, down.stderr
    alive = [p for p in [*pids.values(), *helpers, *started] if _running(p)]
    assert not alive, f"processes still running after down: {alive}"
    status = cluster.script("status")
    assert status.returncode != 0
    assert "slurmctld: not running" in status.stdout


def _network(cluster) -> tuple[str, str, str]:
    """This machine's namespaces, links and addresses (`ip`), to find a cluster's."""
    out = [
        subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        for cmd in (["ip", "netns", "list"], ["ip", "-o", "link"], ["ip", "-4", "-o", "addr"])
    ]
    return out[0], out[1], out[2]


def test_two_nodes_each_in_its_own_namespace_and_down_removes_them(make_local_slurm, tmp_path):
    cluster = make_local_slurm(nodes=2)
    out = cluster.run("sinfo", "-h", "-N", "-o", "%N %P %t").stdout.split("\n")
    assert out[:2] == ["n1 debug* idle", "n2 debug* idle"], out
    layout = dict(line.split("=", 1) for line in (cluster.dir / "layout.env").read_text().split())
    subnet, net_id = layout["SUBNET"], layout["NET_ID"]
    # the controller listens on the bridge only (no address of the machine's own network)
    conf = cluster.conf.read_text()
    assert f"SlurmctldHost=dcvq-ctld({subnet}.1)" in conf
    assert f"NodeName=n2 NodeHostname=n2 NodeAddr={subnet}.3" in conf

    # each task sees its node's hostname and address; the other node is reachable by name
    script = (
        'echo "$SLURM_PROCID $(hostname) $(getent hosts $(hostname) | cut -d" " -f1)"'
        ' "$(getent hosts n1 | cut -d" " -f1)"'
    )
    job_id, states = cluster.sbatch(
        "--nodes=2", "--ntasks-per-node=1", f"--output={tmp_path}/%j.out",
        "--wrap", f"srun bash -c '{script}'",
        cwd=tmp_path,
    )  # fmt: skip
    assert states == ["COMPLETED"]
    lines = sorted((tmp_path / f"{job_id}.out").read_text().split("\n")[:2])
    assert lines == [f"0 n1 {subnet}.2 {subnet}.2", f"1 n2 {subnet}.3 {subnet}.2"], lines

    # interactive srun, as if logged in on n1 (from the machine it cannot reach the nodes)
    srun = cluster.script("exec", "n1", "srun", "--nodes=2", "hostname", timeout=60)
    assert srun.returncode == 0 and sorted(srun.stdout.split()) == ["n1", "n2"], srun.stderr

    namespaces, links, addrs = _network(cluster)
    assert re.search(rf"^dcvq-{net_id}-n1\b", namespaces, re.M)
    assert f"dcvqbr{net_id}:" in links and f"{subnet}.1/24" in addrs
    pids = cluster.daemon_pids()
    assert set(pids) == {"munged", "slurmctld", "slurmd-n1", "slurmd-n2"}

    down = cluster.script("down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert not [p for p in pids.values() if _running(p)]
    namespaces, links, addrs = _network(cluster)
    assert f"dcvq-{net_id}-" not in namespaces
    assert f"dcvqbr{net_id}:" not in links and f"dcvq{net_id}n" not in links
    assert f"{subnet}." not in addrs
    assert cluster.script("down").returncode == 0  # safe to repeat


def test_up_with_another_node_count_is_refused_while_running(local_slurm):
    again = local_slurm.script("up", "--nodes", "2")
    assert again.returncode != 0
    assert "runs with 1 node(s), not 2: run `" in again.stderr and "down` first" in again.stderr
    bad = local_slurm.script("up", "--nodes", "zero")
    assert bad.returncode != 0 and "give a number from 1 to 200" in bad.stderr
