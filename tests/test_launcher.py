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
    ],
)
def test_launcher_errors(change, message):
    assert launcher_errors(GOOD, slurm=True) == []
    errors = launcher_errors(GOOD | change, slurm=True)
    assert len(errors) == 1 and message in errors[0]


def test_local_launcher_is_one_machine():
    assert "one machine" in launcher_errors({"nodes": 2}, slurm=False)[0]


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
