"""`python -m dcvq.evaluate` stopped by a signal mid-evaluation (as Slurm stops a job:
the signal goes to the whole process group, data-loader workers included) exits with
128 + signal and leaves no eval.json that could be taken for a finished evaluation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from dcvq.config import compose
from dcvq.trainer import train

N_IMAGES = 1500  # a few seconds of evaluation at batch size 1: the signal lands inside it


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    cfg = compose(
        ["model=tiny", "quantizer=vq", "codebook.size=16", "dataset.resolution=32",
         "loss.perceptual_weight=0", "trainer.max_steps=1", "trainer.batch_size=2",
         "trainer.eval_every=1", "trainer.ckpt_every=1", "trainer.num_workers=0",
         "trainer.device=cpu",
         "trainer.progress=false", "eval.max_images=2"]
    )  # fmt: skip
    train(cfg, run)
    return run / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    (root / "val").mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "val" / f"{i:05d}.png")
    return root


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "workers"), [(signal.SIGUSR2, 2), (signal.SIGTERM, 0)])
def test_signal_mid_evaluation_leaves_no_eval_json(checkpoint, images, tmp_path, sig, workers):
    out = tmp_path / "eval"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcvq.evaluate", f"checkpoint={checkpoint}",
         "dataset=imagefolder", f"dataset.root={images}", "eval.fid=false", "eval.lpips=false",
         "eval.save_reconstructions=true", "batch_size=1", f"num_workers={workers}",
         "progress=false", f"hydra.run.dir={out}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, as a Slurm job step
        env=os.environ | {"DCVQ_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    partial = out / "reconstructions.partial"

    def written() -> int:
        return sum(len(os.listdir(d)) for d in (partial, out / "reconstructions") if d.is_dir())

    try:
        deadline = time.monotonic() + 120
        while written() < 20:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the evaluation did not start"
            time.sleep(0.05)
        os.killpg(proc.pid, sig)
        log, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, log[-3000:]
    assert f"stopped by {sig.name} before the evaluation finished" in log
    assert "Traceback" not in log and "exited unexpectedly" not in log, log[-3000:]
    assert not (out / "eval.json").exists()
    assert not list(out.glob(".eval.json*")) and not (out / "reconstructions").exists()
    assert 20 <= len(os.listdir(partial)) < N_IMAGES  # what was written is marked partial
