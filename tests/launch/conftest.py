"""A real Slurm for the launcher tests, started through launch/local_slurm.sh.

`local_slurm` (session scope) brings up a private single-node cluster (its own state dir,
ports and munged, so it never touches another cluster on the machine) and takes it down at
the end. It puts ``SLURM_CONF`` into ``os.environ`` for the session, so that ``sbatch``,
submitit and the Hydra submitit launcher (also in subprocesses) find it.
`local_slurm_two_nodes` (session scope) is a second private cluster of two nodes, each a
slurmd in its own network namespace (``local_slurm.sh up --nodes 2``); tests pass its
``env`` to their subprocesses.

Where a cluster is impossible (not Linux, not root, no package registry to install Slurm
from, the script fails) the tests that use it SKIP with the reason, except when
``DCVQ_REQUIRE_SLURM=1`` (CI): then they FAIL.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from dcvq.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "launch" / "local_slurm.sh"
REQUIRE_ENV = "DCVQ_REQUIRE_SLURM"
# A first `up` may run apt-get update + install; later ones take about a second.
UP_TIMEOUT_S = 900


class SlurmUnavailable(Exception):
    """The local cluster cannot be started here; the message says why."""


def skip_or_fail(reason: str) -> None:
    """Skip with `reason`, or fail when DCVQ_REQUIRE_SLURM=1 (CI must run these tests)."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1 turns this skip into a failure)", pytrace=False)
    pytest.skip(reason)


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass
class LocalSlurm:
    """A running cluster: its state dir, slurm.conf and the environment to reach it."""

    dir: Path
    conf: Path
    env: dict[str, str]
    nodes: int = 1
    up_seconds: float = 0.0

    def script(self, *args: str, timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess:
        """Runs launch/local_slurm.sh with this cluster's settings (never raises on rc)."""
        return subprocess.run(
            ["bash", str(SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run(self, *cmd: str, cwd: Path | None = None, timeout: float = 120, check: bool = True):
        """Runs a Slurm client command (sbatch, squeue, ...) against this cluster."""
        proc = subprocess.run(
            list(cmd), env=self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                f"stderr:\n{proc.stderr}"
            )
        return proc

    def sbatch(self, *args: str, cwd: Path, timeout: float = 60) -> tuple[str, list[str]]:
        """Submits with `sbatch ARGS`, waits for the job (all array tasks) to end.

        Returns the job id and the final states (one per array task). Polls every 0.2 s:
        `sbatch --wait` polls at 2 s, 4 s, ... and would make each test seconds slower.
        """
        job_id = self.run("sbatch", "--parsable", *args, cwd=cwd).stdout.strip().split(";")[0]
        return job_id, self.wait(job_id, timeout=timeout)

    def wait(self, job_id: str, timeout: float = 60) -> list[str]:
        """Waits until no task of `job_id` is pending/running; returns their final states."""
        deadline = time.monotonic() + timeout
        while self.run("squeue", "-h", "-j", job_id, "-o", "%T", check=False).stdout.strip():
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still queued/running after {timeout}s")
            time.sleep(0.2)
        lines = self.run("scontrol", "-o", "show", "job", job_id).stdout.splitlines()
        return [
            w.split("=", 1)[1] for line in lines for w in line.split() if w.startswith("JobState=")
        ]

    def daemon_pids(self) -> dict[str, int]:
        """Pids from the daemons' pid files (whether or not they still run); several
        nodes: one ``slurmd-<node>`` each."""
        files = {
            "munged": self.dir / "munge" / "munged.pid",
            "slurmctld": self.dir / "run" / "slurmctld.pid",
        }
        if self.nodes == 1:
            files["slurmd"] = self.dir / "run" / "slurmd.pid"
        else:
            files |= {f.stem: f for f in (self.dir / "run").glob("slurmd-*.pid")}
        return {n: int(f.read_text().strip()) for n, f in files.items() if f.exists()}


def start_local_slurm(nodes: int = 1) -> LocalSlurm:
    """Starts a private cluster of ``nodes`` nodes (fresh dir, free ports); raises
    SlurmUnavailable."""
    if not sys.platform.startswith("linux"):
        raise SlurmUnavailable("the local Slurm cluster needs Linux")
    if os.geteuid() != 0:
        raise SlurmUnavailable(
            "the local Slurm cluster needs root (apt-get install, munged as user munge)"
        )
    if shutil.which("bash") is None:
        raise SlurmUnavailable("no bash to run launch/local_slurm.sh")
    # munged (running as user munge) must reach the dir: mkdtemp makes it 0700.
    state_dir = Path(tempfile.mkdtemp(prefix="dcvq-slurm-", dir="/tmp"))
    state_dir.chmod(0o755)
    ctld_port, slurmd_port = _free_ports(2)
    env = dict(os.environ)
    env.update(
        DCVQ_SLURM_DIR=str(state_dir),
        DCVQ_SLURM_CTLD_PORT=str(ctld_port),
        DCVQ_SLURM_SLURMD_PORT=str(slurmd_port),
        SLURM_CONF=str(state_dir / "slurm.conf"),
    )
    cluster = LocalSlurm(dir=state_dir, conf=state_dir / "slurm.conf", env=env, nodes=nodes)
    t0 = time.monotonic()
    try:
        proc = cluster.script("up", "--nodes", str(nodes))
    except subprocess.TimeoutExpired as e:
        stop_local_slurm(cluster)
        raise SlurmUnavailable(f"launch/local_slurm.sh up timed out after {e.timeout}s") from e
    cluster.up_seconds = time.monotonic() - t0
    if proc.returncode != 0:
        stop_local_slurm(cluster)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("local_slurm: ERROR")]
        raise SlurmUnavailable(
            f"launch/local_slurm.sh up failed (exit {proc.returncode}): "
            f"{errors[-1] if errors else 'see its output'}\n{_tail(proc.stdout + proc.stderr)}"
        )
    return cluster


def stop_local_slurm(cluster: LocalSlurm, remove: bool = True) -> subprocess.CompletedProcess:
    proc = cluster.script("down", timeout=120)
    if remove and proc.returncode == 0:
        shutil.rmtree(cluster.dir, ignore_errors=True)
    return proc


@pytest.fixture(scope="session")
def local_slurm() -> Iterator[LocalSlurm]:
    """A running single-node Slurm (partition `debug`, one stand-in GPU) for the session."""
    try:
        cluster = start_local_slurm()
    except SlurmUnavailable as e:
        skip_or_fail(f"no local Slurm cluster: {e}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(cluster.conf))
        try:
            yield cluster
        finally:
            stop_local_slurm(cluster)


@pytest.fixture(scope="session")
def local_slurm_two_nodes() -> Iterator[LocalSlurm]:
    """A running two-node Slurm (nodes n1, n2 in their own network namespaces, partition
    `debug`); SLURM_CONF is in its ``env``, not in ``os.environ`` (that is `local_slurm`'s)."""
    try:
        cluster = start_local_slurm(nodes=2)
    except SlurmUnavailable as e:
        skip_or_fail(f"no local two-node Slurm cluster: {e}")
    try:
        yield cluster
    finally:
        stop_local_slurm(cluster)


@pytest.fixture
def make_local_slurm() -> Iterator[Callable[..., LocalSlurm]]:
    """Starts extra private clusters on demand (``make(nodes=1)``, e.g. to test `down`);
    all stopped after."""
    started: list[LocalSlurm] = []

    def make(nodes: int = 1) -> LocalSlurm:
        try:
            cluster = start_local_slurm(nodes)
        except SlurmUnavailable as e:
            skip_or_fail(f"no local Slurm cluster: {e}")
        started.append(cluster)
        return cluster

    yield make
    for cluster in started:
        stop_local_slurm(cluster)


@pytest.fixture
def requeue_job_1() -> Callable[..., str]:
    """:func:`signal_job_1_and_check_requeue`, for the tests of this folder."""
    return signal_job_1_and_check_requeue


def signal_job_1_and_check_requeue(
    cluster: LocalSlurm, submitter: subprocess.Popen, sweep: Path, max_steps: int
) -> str:
    """Of a sweep of two identical jobs (run dirs ``sweep/0`` and ``sweep/1``), sends USR2
    to job 1 once it trains, waits for the sweep, and checks that job 1 checkpointed,
    was requeued once, resumed at the step it stopped at, completed, and ended with
    exactly job 0's weights. Returns ``scontrol show job`` of job 1 (one line)."""
    interrupted = sweep / "1"
    try:
        log = interrupted / "train.jsonl"
        deadline = time.monotonic() + 240
        while not (log.exists() and len(log.read_text().splitlines()) >= 2):
            assert submitter.poll() is None, submitter.communicate()[0][-4000:]
            assert time.monotonic() < deadline, "job 1 did not start training"
            time.sleep(0.2)
        array_id = cluster.run("squeue", "-h", "-o", "%F").stdout.split()[0]
        cluster.run("scancel", "--signal=USR2", f"{array_id}_1")
        output, _ = submitter.communicate(timeout=420)
    finally:
        if submitter.poll() is None:
            submitter.kill()
    assert submitter.returncode == 0, output[-4000:]

    text = (interrupted / "train.log").read_text()
    assert "exited unexpectedly" not in output + text, text[-3000:]
    written = re.search(r"checkpoint written at step (\d+) after a signal", text)
    resumed = re.search(r"resumed from .* at step (\d+)", text)
    assert written and resumed, text[-3000:]
    assert written.group(1) == resumed.group(1)
    assert 0 < int(resumed.group(1)) < max_steps
    assert cluster.wait(f"{array_id}_1") == ["COMPLETED"]
    job = cluster.run("scontrol", "-o", "show", "job", f"{array_id}_1").stdout
    assert "Restarts=1" in job, job

    straight = read_checkpoint(sweep / "0" / "checkpoints" / "last.pt")
    requeued = read_checkpoint(interrupted / "checkpoints" / "last.pt")
    assert straight["step"] == requeued["step"] == max_steps
    for part in ("model", "discriminator"):
        for name, value in straight[part].items():
            assert torch.equal(value, requeued[part][name]), f"{part}.{name}"
    return job
