"""DDP: torchrun with 2 CPU processes (gloo) at batch b == one process at batch 2b."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dcvq.checkpoint import read_checkpoint
from dcvq.prior import run_prior
from dcvq.prior.train import CHECKPOINT

COMMON = ["eval.fid=false", "prior.max_steps=3", "prior.grid_images=0", "prior.ckpt_every=100"]


@pytest.mark.slow
def test_two_ranks_match_one_process_with_double_batch(
    prior_run_cfg, fast_overrides, dual_checkpoint, tmp_path
):
    cfg = prior_run_cfg(*COMMON, "prior.batch_size=8")
    single = run_prior(cfg.prior, dual_checkpoint, tmp_path / "single", cfg.eval, "cpu",
                       num_workers=0)  # fmt: skip

    run_dir = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "dcvq.prior", f"checkpoint={dual_checkpoint}", *fast_overrides, *COMMON,
         "prior.batch_size=4", "device=cpu", "num_workers=0", "progress=false",
         f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"}, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    a = read_checkpoint(tmp_path / "single" / CHECKPOINT)["model"]
    b = read_checkpoint(run_dir / CHECKPOINT)["model"]
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, worst
    ddp = json.loads((run_dir / "prior.json").read_text())
    assert abs(ddp["bits_per_token"] - single["bits_per_token"]) < 1e-4
