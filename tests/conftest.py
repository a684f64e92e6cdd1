"""Shared fixtures. tests/ is deliberately not a package (torch-fidelity installs one
named ``tests``); pytest runs with ``--import-mode=importlib``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def empty_torch_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test starts with an empty torch hub cache: nothing real is ever used."""
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def standin_vgg16_file(tmp_path_factory) -> Path:
    """A randomly initialised torchvision VGG16 (features only), saved like the real file.

    Meaningless values, but it goes through exactly the loading code of the real weights.
    """
    from torchvision.models import vgg16

    torch.manual_seed(1234)
    state = {f"features.{k}": v for k, v in vgg16().features.state_dict().items()}
    path = tmp_path_factory.mktemp("standin") / "vgg16-397923af.pth"
    torch.save(state, path)
    return path


@pytest.fixture
def lpips_weights(empty_torch_home, standin_vgg16_file) -> Path:
    """Puts the stand-in VGG16 into this test's torch hub cache; returns its path."""
    dst = empty_torch_home / "hub" / "checkpoints" / standin_vgg16_file.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(standin_vgg16_file, dst)
    return dst



# A training run that takes seconds on a CPU: f4 model at 32x32, a one-layer codebook
# transformer, 32 codes per codebook, discriminator from step 2.
TINY = [
    "model=tiny",
    "dataset.resolution=32",
    "dataset.samples_per_epoch=16",
    "codebook.size=32",
    "loss.perceptual_weight=0",
    "loss.disc_start=2",
    "loss.disc_ndf=8",
    "trainer.batch_size=2",
    "trainer.max_steps=4",
    "trainer.eval_every=2",
    "trainer.ckpt_every=2",
    "trainer.log_every=1",
    "trainer.num_workers=0",
    "trainer.eval_batch_size=16",
    "trainer.grid_images=2",
    "trainer.progress=false",
    "trainer.lr=1e-3",
    "eval.max_images=8",
]
TINY_TRANSFORMER = ["quantizer.transformer_layers=1", "quantizer.transformer_ff=64"]


@pytest.fixture
def tiny_cfg():
    """``tiny_cfg(*overrides, quantizer=...)`` -> a composed tiny training config."""
    from dcvq.config import compose

    def make(*overrides: str, quantizer: str | None = "t128_s128"):
        """``quantizer=None`` leaves the choice to the overrides (e.g. ``+baseline=...``)."""
        chosen = [f"quantizer={quantizer}"] if quantizer else []
        extra = TINY_TRANSFORMER if quantizer and quantizer.startswith("t") else []
        return compose([*chosen, *TINY, *extra, *overrides])

    return make


@pytest.fixture
def tiny_overrides() -> list[str]:
    """The tiny overrides as command-line arguments (for subprocess runs of train.py)."""
    return [*TINY, *TINY_TRANSFORMER]
