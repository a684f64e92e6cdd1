"""Launcher presets (conf/hydra/launcher/): what they compose to, the sbatch script that
slurm_a100 submits, and a real sweep through slurm_local on the local Slurm cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
SLURM_ENV = ["DCVQ_SLURM_PARTITION", "DCVQ_SLURM_ACCOUNT", "DCVQ_SLURM_QOS"]
SLURM_ENV += ["DCVQ_SLURM_CONSTRAINT", "DCVQ_VENV"]


def launcher_cfg(*overrides: str):
    """The composed hydra.launcher node (interpolations resolved on access)."""
    from hydra import compose, initialize_config_dir

    from dcvq.config import CONF_DIR, register

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    return cfg.hydra.launcher


@pytest.fixture
def no_slurm_env(monkeypatch):
    for name in SLURM_ENV:
        monkeypatch.delenv(name, raising=False)


def test_slurm_a100_composes(no_slurm_env, monkeypatch):
    launcher = launcher_cfg("hydra/launcher=slurm_a100")
    assert launcher._target_ == SLURM
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (1, 8, 8)
    assert launcher.cpus_per_task >= 1 and launcher.mem_per_gpu
    assert launcher.timeout_min > 10
    assert launcher.max_num_timeout > 0, "requeue on timeout needs max_num_timeout > 0"
    assert launcher.additional_parameters.requeue is True
    # unset environment: the cluster's defaults
    assert launcher.partition is None and launcher.account is None
    assert launcher.qos is None and launcher.constraint is None

    # one task per GPU follows gpus_per_node
    fewer = launcher_cfg("hydra/launcher=slurm_a100", "hydra.launcher.gpus_per_node=4")
    assert (fewer.gpus_per_node, fewer.tasks_per_node) == (4, 4)

    monkeypatch.setenv("DCVQ_SLURM_PARTITION", "gpu-a100")
    monkeypatch.setenv("DCVQ_SLURM_ACCOUNT", "proj42")
    monkeypatch.setenv("DCVQ_SLURM_CONSTRAINT", "a100")
    from_env = launcher_cfg("hydra/launcher=slurm_a100")
    assert (from_env.partition, from_env.account, from_env.constraint) == (
        "gpu-a100",
        "proj42",
        "a100",
    )
    cli = launcher_cfg("hydra/launcher=slurm_a100", "hydra.launcher.partition=other")
    assert cli.partition == "other"


def test_slurm_local_and_local_compose():
    slurm_local = launcher_cfg("hydra/launcher=slurm_local")
    assert slurm_local._target_ == SLURM
    assert slurm_local.partition == "debug"
    assert slurm_local.gpus_per_node is None and slurm_local.gres is None
    assert (slurm_local.tasks_per_node, slurm_local.cpus_per_task) == (1, 1)
    assert slurm_local.mem_gb <= 4
    assert 10 < slurm_local.timeout_min <= 60
    assert slurm_local.max_num_timeout > 0

    local = launcher_cfg("hydra/launcher=local")
    assert local._target_ == LOCAL
    assert local.gpus_per_node >= 1, "0 would hide every GPU (CUDA_VISIBLE_DEVICES='')"


def _sbatch_flags(script: str) -> dict[str, str | bool]:
    flags: dict[str, str | bool] = {}
    for m in re.finditer(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, re.MULTILINE):
        flags[m.group(1)] = True if m.group(2) is None else m.group(2)
    return flags


def test_slurm_a100_submits_the_promised_sbatch_script(tmp_path, no_slurm_env):
    """The real `train.py -m` path up to sbatch; a stand-in sbatch records the script.

    Needs no Slurm: submitit's SlurmExecutor refuses to start unless `srun` is on PATH
    (shutil.which), so a stand-in srun goes next to the stand-in sbatch. Without it the
    test passed only where the local cluster's fixture had already installed Slurm.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_ins = {
        "sbatch": 'cp "$1" "$FAKE_SBATCH_OUT"\necho "stand-in sbatch: not submitting" >&2\n',
        "srun": 'echo "stand-in srun: never called here" >&2\n',
    }
    for name, body in stand_ins.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}exit 1\n")
        (bin_dir / name).chmod(0o755)
    recorded = tmp_path / "submitted.sh"
    env = dict(os.environ)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        FAKE_SBATCH_OUT=str(recorded),
        DCVQ_SLURM_PARTITION="gpu-a100",
        DCVQ_SLURM_ACCOUNT="proj42",
        DCVQ_VENV="/shared/dcvq/.venv",
    )
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", "hydra/launcher=slurm_a100",
         "quantizer=vq,t128_s128", "codebook.size=512",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0  # the stand-in refuses to submit
    assert "stand-in sbatch: not submitting" in proc.stderr, proc.stderr[-3000:]
    script = recorded.read_text()
    flags = _sbatch_flags(script)
    expected = {
        "array": "0-1%2",  # the sweep is ONE job array
        "nodes": "1",
        "gpus-per-node": "8",
        "ntasks-per-node": "8",
        "cpus-per-task": "8",
        "mem-per-gpu": "60G",
        "time": "1440",
        "partition": "gpu-a100",
        "account": "proj42",
        "signal": "USR2@120",
        "requeue": True,
    }
    assert {k: flags.get(k) for k in expected} == expected, script
    assert "constraint" not in flags and "qos" not in flags
    assert "export DCVQ_VENV=/shared/dcvq/.venv" in script
    assert "export SRUN_CPUS_PER_TASK=8" in script
    assert "export SLURM_KILL_BAD_EXIT=1" in script  # a failed rank ends the job's others
    assert re.search(r"^srun .* -m submitit\.core\._submit ", script, re.MULTILINE), script


def test_sweep_of_two_jobs_through_slurm_local(local_slurm, tmp_path, tiny_overrides):
    sweep = tmp_path / "sweep"
    overrides = list(tiny_overrides)
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", "hydra/launcher=slurm_local",
         *overrides, "trainer.max_steps=2", "codebook.size=16,32",
         f"hydra.sweep.dir={sweep}"],
        cwd=REPO, env=dict(os.environ, **local_slurm.env), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    job_ids = set()
    for num, size in enumerate((16, 32)):
        (job_dir,) = sweep.glob(f"t128_s128_n{size},*")  # named by configuration
        result = json.loads((job_dir / "eval.json").read_text())
        assert result["step"] == 2
        assert result["codebooks"]["global"]["size"] == size
        # it ran as a task of one Slurm job array: hydra.job.id is submitit's <array>_<task>
        hydra_cfg = yaml.safe_load((job_dir / ".hydra" / "hydra.yaml").read_text())
        array_id, task = hydra_cfg["hydra"]["job"]["id"].split("_")
        assert task == str(num)
        job_ids.add(array_id)
    assert len(job_ids) == 1
    # submitit returns once a task's result file exists; Slurm records the end a moment later
    assert local_slurm.wait(job_ids.pop()) == ["COMPLETED", "COMPLETED"]


@pytest.mark.slow
def test_signalled_job_is_requeued_and_ends_like_an_uninterrupted_one(
    local_slurm, tmp_path, tiny_overrides, requeue_job_1
):
    """Two identical jobs; one gets Slurm's USR2 mid-run (as on preemption or shortly before
    the time limit): it checkpoints, submitit requeues it, the requeued job resumes in the
    same run dir and ends with exactly the parameters of the job that was never stopped.
    With data-loader workers, as by default: Slurm signals them too."""
    max_steps = 12
    sweep = tmp_path / "sweep"
    overrides = list(tiny_overrides)
    submitter = subprocess.Popen(
        [sys.executable, "train.py", "-m", "hydra/launcher=slurm_local", *overrides,
         f"trainer.max_steps={max_steps}", "trainer.eval_every=1000",
         "trainer.ckpt_every=1000", "trainer.num_workers=2", "seed=0,0",
         # two identical jobs: run dirs by number (by configuration they would be one)
         "hydra.sweep.subdir=${hydra.job.num}", f"hydra.sweep.dir={sweep}"],
        cwd=REPO, env=dict(os.environ, **local_slurm.env), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    requeue_job_1(local_slurm, submitter, sweep, max_steps)
