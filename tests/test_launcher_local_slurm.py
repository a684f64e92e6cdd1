"""`hydra/launcher=slurm_local` finds launch/local_slurm.sh's cluster by itself: the
README's `launch/local_slurm.sh up && python train.py -m ... hydra/launcher=slurm_local`
works in a shell where SLURM_CONF was never exported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dcvq.config import CONF_DIR
from dcvq.launcher import local_slurm_conf, local_slurm_nodes

# The first line launch/local_slurm.sh writes, and its node lines (one per node).
HEADER = "# Written by launch/local_slurm.sh: a local Slurm of {n} node(s) for development and CI."


def test_conf_of_the_local_cluster_goes_into_the_environment(tmp_path):
    (tmp_path / "slurm.conf").write_text("ClusterName=x\n")
    env = {"DCVQ_SLURM_DIR": str(tmp_path)}
    assert local_slurm_conf(env) is None and env["SLURM_CONF"] == str(tmp_path / "slurm.conf")
    # a SLURM_CONF of the user's wins
    env = {"DCVQ_SLURM_DIR": str(tmp_path), "SLURM_CONF": "/etc/slurm/mine.conf"}
    assert local_slurm_conf(env) is None and env["SLURM_CONF"] == "/etc/slurm/mine.conf"
    env = {"DCVQ_SLURM_DIR": str(tmp_path / "none")}
    error = local_slurm_conf(env)
    assert "SLURM_CONF" not in env
    assert f"{tmp_path / 'none' / 'slurm.conf'} does not exist" in error
    assert "`launch/local_slurm.sh up` as root (sudo where needed" in error


def test_nodes_of_the_local_cluster(tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        f"{HEADER.format(n=2)}\nClusterName=dcvq-local\n"
        "NodeName=n1 NodeAddr=10.218.0.2 CPUs=2\nNodeName=n2 NodeAddr=10.218.0.3 CPUs=2\n"
        "PartitionName=debug Nodes=n[1-2] Default=YES\n"
    )
    assert local_slurm_nodes(conf) == 2
    # a real cluster's slurm.conf (hostlists on its node lines) is not counted
    conf.write_text("ClusterName=big\nNodeName=gpu[001-128] CPUs=64\n")
    assert local_slurm_nodes(conf) is None
    assert local_slurm_nodes(tmp_path / "missing.conf") is None


def _sweep(tmp_path, state_dir, launcher="slurm_local", *overrides):
    """train.py -m with stand-in Slurm tools; sbatch records the SLURM_CONF it was run with."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "sbatch").write_text(f'#!/bin/sh\necho "$SLURM_CONF" > {tmp_path}/sbatch_env\nexit 1\n')
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it
    for tool in ("sbatch", "srun"):
        (fake / tool).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    env |= {"PATH": f"{fake}:{os.environ['PATH']}", "DCVQ_SLURM_DIR": str(state_dir)}
    return subprocess.run(
        [sys.executable, str(CONF_DIR.parent / "train.py"), "-m", f"hydra/launcher={launcher}",
         "experiment=demo", *overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip


@pytest.mark.slow
def test_sweep_submits_to_the_local_cluster_without_slurm_conf(tmp_path):
    state = tmp_path / "dcvq-slurm"
    state.mkdir()
    (state / "slurm.conf").write_text("ClusterName=dcvq-local\n")
    proc = _sweep(tmp_path, state)
    # the stand-in sbatch fails the submission, after it was run with the cluster's conf
    assert (tmp_path / "sbatch_env").read_text().strip() == str(state / "slurm.conf"), (
        proc.stdout + proc.stderr
    )[-3000:]


@pytest.mark.slow
def test_sweep_without_a_local_cluster_says_how_to_start_one(tmp_path):
    proc = _sweep(tmp_path, tmp_path / "no-cluster")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "sweep not submitted" in out, out[-3000:]
    assert "`launch/local_slurm.sh up` as root (sudo where needed" in out
    assert not (tmp_path / "sbatch_env").exists()


@pytest.mark.slow
def test_more_nodes_than_the_local_cluster_has_says_how_to_start_them(tmp_path):
    state = tmp_path / "dcvq-slurm"
    state.mkdir()
    (state / "slurm.conf").write_text(f"{HEADER.format(n=1)}\nNodeName=localhost CPUs=2\n")
    proc = _sweep(tmp_path, state, "slurm_local", "hydra.launcher.nodes=2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "sweep not submitted" in out, out[-3000:]
    conf = state / "slurm.conf"
    assert f"hydra.launcher.nodes=2: the local cluster ({conf}) has 1 node(s)" in out
    assert "`launch/local_slurm.sh down && launch/local_slurm.sh up --nodes 2`" in out
    assert not (tmp_path / "sbatch_env").exists()
