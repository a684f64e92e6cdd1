"""The README's Python snippets run as written (paths replaced by a tiny checkpoint and
image): the input range, inference without autograd, the unclamped decoder output."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def snippet(containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    found = [b for b in blocks if containing in b]
    assert len(found) == 1, f"one README python block with {containing!r}"
    return found[0]


@pytest.fixture
def checkpoint(tiny_cfg, tmp_path) -> Path:
    from dcvq.trainer import train

    run = tmp_path / "run"
    train(tiny_cfg("trainer.max_steps=1", "eval.max_images=2"), run)
    return run / "checkpoints" / "last.pt"


def test_load_model_snippet(checkpoint, tmp_path):
    code = snippet("dcvq.load_model(")
    assert "[-1, 1]" in code and "torch.no_grad()" in code and "not clamped" in code
    pixels = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    code = code.replace('"outputs/.../checkpoints/last.pt"', repr(str(checkpoint)))
    code = code.replace('"photo.png"', repr(str(tmp_path / "photo.png")))
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    model, images, z_q = ns["model"], ns["images"], ns["z_q"]
    indices, recon = ns["indices"], ns["recon"]
    assert not model.training  # load_model: eval mode
    assert images.shape == (1, 3, 32, 48) and images.min() >= -1 and images.max() <= 1
    assert indices.shape == (1, 2, 8, 12) and indices.dtype == torch.long  # f4, global first
    assert not z_q.requires_grad  # encoded without autograd
    assert recon.shape == images.shape and recon.abs().max() <= 1
    # the global codebook was generated once and is reused (no_grad + eval mode)
    cache = model.quantizer.global_codebook._cache
    assert cache is not None
    with torch.no_grad():
        again = model.decode_indices(indices)
    assert model.quantizer.global_codebook._cache is cache
    # decode's own output is the decoder's raw output: the snippet's clamp is what bounds it
    assert torch.equal(again.clamp(-1, 1), recon)


def test_compose_snippet():
    code = snippet("from dcvq.config import compose")
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["cfg"].quantizer._target_ == "dcvq.quantizers.VectorQuantizer"
    assert ns["cfg"].model.ch == 32 and ns["ev"].checkpoint == "last.pt"  # demo's tiny model
    assert sum(p.numel() for p in ns["model"].parameters()) > 0
