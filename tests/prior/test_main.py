"""``python -m dcvq.prior``: the data settings come from the checkpoint's training run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dcvq.prior.__main__ import prior_from_config


def test_data_settings_come_from_the_checkpoint(prior_run_cfg, dual_checkpoint, tmp_path):
    overrides = [f"checkpoint={dual_checkpoint}", "eval.fid=false", "prior.max_steps=1"]
    cfg = prior_run_cfg(*overrides)
    assert cfg.dataset.resolution == 256  # conf/dataset/samples.yaml; the run used 32
    out = prior_from_config(cfg, tmp_path, overrides)
    assert out["data"]["resolution"] == 32 and out["sequence"]["grid"] == [8, 8]


def test_a_missing_checkpoint_is_named_before_anything_runs(prior_run_cfg, tmp_path):
    missing = tmp_path / "runs" / "last.pt"
    with pytest.raises(FileNotFoundError, match=f"checkpoint {missing} does not exist"):
        prior_from_config(prior_run_cfg(f"checkpoint={missing}"), tmp_path / "out", [])


def test_command_line(dual_checkpoint, fast_overrides, tmp_path):
    out = tmp_path / "prior"
    proc = subprocess.run(
        [sys.executable, "-m", "dcvq.prior", f"checkpoint={dual_checkpoint}", *fast_overrides,
         "prior.max_steps=2", "eval.missing_weights=skip", "num_workers=0", "progress=false",
         f"hydra.run.dir={out}"],
        capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"}, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "prior.json").read_text())
    assert result["steps"] == 2 and result["fid"] is None  # no Inception weights: skipped
    assert "from the checkpoint's training run: dataset.resolution=32" in proc.stdout
    assert (out / "samples.png").is_file()
