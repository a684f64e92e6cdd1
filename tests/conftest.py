"""Shared fixtures. tests/ is deliberately not a package (torch-fidelity installs one
named ``tests``); pytest runs with ``--import-mode=importlib``."""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path
from unittest import mock

import pytest
import torch
from torch import nn

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

# Reference implementations the parity, Gumbel and benchmark tests compare against. They
# come from `make install` alone: taming's PyPI metadata pins an ancient torch, so the
# Makefile installs it with --no-deps and `pip install -e .[dev,reference]` lacks it. A
# missing one stops the run (a skip would pass CI without the parity tests).
REFERENCE_MODULES = {
    "taming": "taming-transformers-rom1504 is missing: run `make install` "
    "(it installs it with --no-deps)",
    "einops": "einops is missing: run `make install`",
    "vector_quantize_pytorch": "vector-quantize-pytorch is missing: run `make install`",
}


def pytest_configure(config: pytest.Config) -> None:
    missing = [msg for mod, msg in REFERENCE_MODULES.items() if find_spec(mod) is None]
    if missing:
        raise pytest.UsageError("\n".join(missing))


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


# A training run that takes seconds on a CPU: conf/experiment/tiny.yaml, the same preset as
# `python train.py experiment=tiny` (f4 model at 32x32, a one-layer codebook transformer
# where the quantizer has one, 32 codes per codebook, discriminator from step 2, the
# device pinned to the CPU).
TINY = "experiment=tiny"


def with_tiny(overrides) -> list[str]:
    """``overrides`` with the tiny preset; another experiment among them is shrunk by it
    (``experiment=demo`` -> ``experiment=[demo,tiny]``: tiny's values win, as the override
    list's did)."""
    chosen = [o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")]
    rest = [o for o in overrides if not o.startswith("experiment=")]
    return [f"experiment=[{chosen[-1]},tiny]" if chosen else TINY, *rest]


@pytest.fixture
def tiny_cfg():
    """``tiny_cfg(*overrides, quantizer=...)`` -> a composed tiny training config."""
    from dcvq.config import compose

    def make(*overrides: str, quantizer: str | None = "t128_s128"):
        """``quantizer=None`` leaves the choice to the overrides (e.g. ``+baseline=...``,
        which sets its own codebook size: add ``codebook.size=32`` for a tiny one)."""
        chosen = [f"quantizer={quantizer}"] if quantizer else []
        return compose([*chosen, *with_tiny(overrides)])

    return make


@pytest.fixture
def tiny_overrides() -> list[str]:
    """The tiny run as command-line arguments (for subprocess runs of train.py)."""
    return [TINY]


# ---- stand-in Inception for FID plumbing (never for results) -------------------------
# Built through torch-fidelity's own module so the state dict has exactly the real
# file's keys and shapes. A plain random init collapses the features (FID ~ 0), so
# convolutions are re-initialised and every BatchNorm is calibrated on random images.

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def calibration_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Noise plus smooth colour fields: activations with varied statistics."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (n, 3, size, size), generator=g).float()
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 255
    smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    return (0.5 * noise + 0.5 * smooth).round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="session")
def make_images():
    """``make_images(n, size, seed) -> uint8 n x 3 x size x size`` test images."""
    return calibration_images


@pytest.fixture(scope="session")
def standin_inception_file(tmp_path_factory) -> Path:
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    # Build the module without any weights: torch-fidelity's loader is bypassed only
    # here, to create the file that the real loading path then reads.
    with (
        mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda s, d: None),
    ):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
            m.momentum = None  # cumulative average: one pass sets the statistics
    net.train()
    with torch.no_grad():
        net(calibration_images(4, 64, seed=0))
    net.eval()
    path = tmp_path_factory.mktemp("standin_inception") / INCEPTION_FILE
    torch.save({k: v.detach().float().contiguous() for k, v in net.state_dict().items()}, path)
    return path


@pytest.fixture
def inception_weights(empty_torch_home, standin_inception_file) -> Path:
    """Puts the stand-in Inception into this test's torch hub cache; returns its path."""
    dst = empty_torch_home / "hub" / "checkpoints" / INCEPTION_FILE
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(standin_inception_file, dst)
    return dst


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch) -> Path:
    """wandb in offline mode for subprocesses, with no key or netrc to find (no prompt);
    returns its directory."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_home"))
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path / "wandb_home"


@pytest.fixture(scope="session")
def wandb_records():
    """tests/logger/wandb_records.py, the reader of wandb's offline run files: a test helper
    (dcvq itself never parses wandb's private format), loaded by path since tests/ is not a
    package."""
    import importlib.util
    import sys

    name = "dcvq_tests_wandb_records"
    if name not in sys.modules:  # dataclasses look their module up in sys.modules
        path = Path(__file__).parent / "logger" / "wandb_records.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None, path
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]
