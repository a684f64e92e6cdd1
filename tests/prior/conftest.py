"""Tokenizer checkpoints and prior configs for the prior's tests.

The dual tokenizer is a real 1-step ``experiment=tiny`` training run (f4 at 32x32: 8 x 8
positions x 2 codebooks of 32 codes); the single-codebook one is an untrained ``vq``
model saved in the same checkpoint format (the prior only reads its weights and config).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dcvq.config import compose

# Small enough for seconds on a CPU: few images, few steps, a handful of FID images.
FAST = [
    "prior.max_steps=4",
    "prior.batch_size=8",
    "prior.ckpt_every=2",
    "prior.log_every=1",
    "prior.max_train_images=24",
    "prior.max_eval_images=8",
    "prior.fid_images=4",
    "prior.grid_images=4",
    "prior.eval_batch_size=8",
]


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: a second torch thread only waits for the other core of a
    shared machine (a 6-step run took 5 s with two threads under load, 0.1 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def dual_checkpoint(tmp_path_factory) -> Path:
    from dcvq.trainer import train

    run = tmp_path_factory.mktemp("tokenizer")
    cfg = compose(
        ["experiment=tiny", "quantizer=t128_s128", "trainer.max_steps=1",
         "trainer.eval_every=1", "trainer.ckpt_every=1", "eval.max_images=2"]
    )  # fmt: skip
    train(cfg, run)
    return run / "checkpoints" / "last.pt"


@pytest.fixture(scope="session")
def vq_checkpoint(tmp_path_factory) -> Path:
    from dcvq.build import build_model
    from dcvq.checkpoint import save_checkpoint

    cfg = compose(["experiment=tiny", "quantizer=vq"])
    torch.manual_seed(0)
    model = build_model(cfg)
    path = tmp_path_factory.mktemp("vq") / "last.pt"
    state = {"step": 0, "model": model.state_dict(), "config": OmegaConf.to_yaml(cfg, resolve=True)}
    save_checkpoint(state, path)
    return path


@pytest.fixture
def fast_overrides() -> list[str]:
    """FAST as command-line arguments."""
    return list(FAST)


@pytest.fixture
def prior_run_cfg():
    """``prior_run_cfg(*overrides)`` -> a composed ``python -m dcvq.prior`` config (prior=tiny,
    shrunk by FAST, CPU, no loader workers)."""

    def make(*overrides: str):
        base = ["checkpoint=unset", "device=cpu", "num_workers=0", "progress=false", *FAST]
        return compose([*base, *overrides], config_name="prior_train")

    return make


@pytest.fixture
def prior_cfg(prior_run_cfg):
    """``prior_cfg(*overrides)`` -> the ``prior`` node alone."""

    def make(*overrides: str):
        return prior_run_cfg(*overrides).prior

    return make
