"""Bad launcher settings stop a sweep in the submitting process, before sbatch runs."""

import os
import subprocess
import sys

import pytest

from dcvq.config import CONF_DIR
from dcvq.launcher import launcher_errors

GOOD = {
    "nodes": 1,
    "gpus_per_node": 8,
    "tasks_per_node": 8,
    "timeout_min": 60,
    "max_num_timeout": 5,
    "signal_delay_s": 120,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tasks_per_node": 3}, "tasks_per_node=3 with hydra.launcher.gpus_per_node=8"),
        ({"tasks_per_node": 1}, "tasks_per_node=1 with hydra.launcher.gpus_per_node=8"),
        ({"max_num_timeout": 0}, "max_num_timeout=0"),
        ({"signal_delay_s": 5}, "signal_delay_s=5"),
        ({"timeout_min": 0}, "timeout_min=0 must be >= 1"),
        ({"gpus_per_node": -1, "tasks_per_node": 1}, "gpus_per_node=-1"),
        ({"nodes": 0}, "nodes=0 must be >= 1"),
        # GPUs asked for as a generic resource: still one task per GPU
        (
            {"gpus_per_node": None, "gres": "gpu:a100:4"},
            "tasks_per_node=8 with hydra.launcher.gres=gpu:a100:4 (4 GPUs per node)",
        ),
        ({"gpus_per_task": 1}, "gpus_per_task=1: each rank uses cuda:LOCAL_RANK"),
    ],
)
def test_launcher_errors(change, message):
    assert launcher_errors(GOOD, slurm=True) == []
    errors = launcher_errors(GOOD | change, slurm=True)
    assert len(errors) == 1 and message in errors[0]


def test_several_nodes_are_fine_on_slurm():
    assert launcher_errors(GOOD | {"nodes": 4}, slurm=True) == []
    cpu = {"nodes": 2, "gpus_per_node": None, "tasks_per_node": 1, "timeout_min": 30}
    assert launcher_errors(cpu | {"max_num_timeout": 3, "signal_delay_s": 30}, slurm=True) == []
    assert launcher_errors(GOOD | {"gpus_per_node": None, "gres": "gpu:8"}, slurm=True) == []


def test_local_launcher_is_one_machine():
    (error,) = launcher_errors({"nodes": 2}, slurm=False)
    assert "hydra.launcher.nodes=2: the local launcher runs on this machine only" in error
    # ... and says what does
    assert "hydra/launcher=slurm_a100 hydra.launcher.nodes=2" in error
    assert "`launch/local_slurm.sh up --nodes 2`" in error


def test_bad_settings_fail_before_submission(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text(f"#!/bin/sh\ntouch {tmp_path}/sbatch_was_called\nexit 1\n")
    (fake / "sbatch").chmod(0o755)
    proc = subprocess.run(
        [
            sys.executable,
            str(CONF_DIR.parent / "train.py"),
            "-m",
            "hydra/launcher=slurm_a100",
            "hydra.launcher.tasks_per_node=3",
            "quantizer=glob(*)",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=os.environ | {"PATH": f"{fake}:{os.environ['PATH']}"},
    )
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "sweep not submitted" in out and "set tasks_per_node=8" in out
    assert not (tmp_path / "sbatch_was_called").exists()


@pytest.mark.parametrize(("lr", "submitted"), [(["trainer.lr=1e-4,1e-3"], True), ([], False)])
def test_a_swept_value_counts_as_set(tmp_path, lr, submitted):
    """experiment=study_photos must be given trainer.lr: a sweep over it passes the check
    (the sweep's own config leaves swept keys unset), one without it does not."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text(f"#!/bin/sh\ntouch {tmp_path}/sbatch_was_called\nexit 1\n")
    (fake / "sbatch").chmod(0o755)
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit looks for it
    (fake / "srun").chmod(0o755)
    proc = subprocess.run(
        [sys.executable, str(CONF_DIR.parent / "train.py"), "-m", "hydra/launcher=slurm_a100",
         "experiment=study_photos", *lr, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env=os.environ | {"PATH": f"{fake}:{os.environ['PATH']}"},
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert (tmp_path / "sbatch_was_called").exists() == submitted, out
    assert ("trainer.lr is chosen per row" in out) != submitted
