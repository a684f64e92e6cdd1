"""The README's local Slurm line, in a shell that never exported SLURM_CONF:
`launch/local_slurm.sh up && python train.py -m ... hydra/launcher=slurm_local`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_sweep_finds_the_local_cluster_without_slurm_conf(local_slurm, tmp_path, tiny_overrides):
    sweep = tmp_path / "sweep"
    env = {k: v for k, v in local_slurm.env.items() if k != "SLURM_CONF"}
    # local_slurm.sh's own setting: where `up` put the cluster (default /tmp/dcvq-slurm)
    assert env["DCVQ_SLURM_DIR"] == str(local_slurm.dir)
    overrides = list(tiny_overrides)
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", "hydra/launcher=slurm_local", *overrides,
         "trainer.max_steps=1", "codebook.size=16", f"hydra.sweep.dir={sweep}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    (job,) = sweep.glob("t128_s128_n16,*")  # the run dir, named by configuration
    assert json.loads((job / "eval.json").read_text())["step"] == 1
    assert f"using the cluster of launch/local_slurm.sh ({local_slurm.conf})" in (
        proc.stdout + proc.stderr
    )
