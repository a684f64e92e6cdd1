"""DDP: torchrun with 2 CPU processes (gloo) at batch b == one process at batch 2b."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numerics
import pytest

from dcvq.checkpoint import read_checkpoint
from dcvq.prior import run_prior
from dcvq.prior.config import build_prior
from dcvq.prior.train import CHECKPOINT

REPO = Path(__file__).resolve().parents[2]
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
    a = read_checkpoint(tmp_path / "single" / CHECKPOINT)
    b = read_checkpoint(run_dir / CHECKPOINT)
    # Bounds from the computation (tests/numerics.py): a weight's gradient sums the batch's
    # tokens and crosses the model's fan-ins forward and backward.
    tokens = a["tokens"]
    model = build_prior(cfg.prior, tokens["codebook_sizes"], tokens["grid"], "test")
    terms = numerics.summed_terms(model)
    per_batch = 8 * math.prod(tokens["grid"]) * len(tokens["codebook_sizes"])
    kappa = numerics.fp32_kappa(per_batch + 2 * terms, sum(p.numel() for p in model.parameters()))
    ref, got = a["optimizer"]["state"], b["optimizer"]["state"]
    assert numerics.second_moment_error(got, ref, kappa) <= 1
    wrong = {i: {"exp_avg_sq": s["exp_avg_sq"] * (1 + 1e-3) ** 2} for i, s in ref.items()}
    assert numerics.second_moment_error(got, wrong, kappa) > 1  # a real mismatch fails
    # bits per token: a mean over the held-out tokens of the forward's outputs
    ddp = json.loads((run_dir / "prior.json").read_text())
    bits_kappa = numerics.fp32_kappa(2 * terms, per_batch)
    error = numerics.relative_error([ddp["bits_per_token"]], [single["bits_per_token"]])
    assert error <= bits_kappa, (error, bits_kappa)


@pytest.mark.slow
def test_train_py_under_torchrun_runs_the_prior_stage_with_loader_workers(tiny_overrides, tmp_path):
    """`torchrun ... train.py prior=tiny`: training and the prior stage after it share one
    process group (joining a second one failed now and then); loader workers as by default."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "train.py", *tiny_overrides, "loss.disc_start=1000", "trainer.max_steps=2",
         "trainer.num_workers=2", "eval.max_images=8", "prior=tiny", "prior.max_steps=2",
         "prior.grid_images=2", "prior.max_train_images=16", "prior.max_eval_images=8",
         f"hydra.run.dir={run_dir}"],
        cwd=REPO, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"},
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "world 2" in (run_dir / "train.log").read_text()
    section = json.loads((run_dir / "eval.json").read_text())["prior"]
    written = json.loads((run_dir / "prior" / "prior.json").read_text())
    assert section["steps"] == written["steps"] == 2
    assert section["bits_per_token"] == written["bits_per_token"] > 0
    assert read_checkpoint(run_dir / "prior" / CHECKPOINT)["step"] == 2
    assert (run_dir / "prior" / "samples.png").is_file()
