"""Reconstruction grids (dcvq.images): one writer for training and evaluation, read back
by the report."""

import ast
from pathlib import Path

import numpy as np
import torch

from dcvq.images import save_reconstruction_grid, split_reconstruction_grid
from dcvq.metrics import to_uint8

PACKAGE = Path(__file__).resolve().parents[1] / "dcvq"


def test_grid_is_inputs_above_clamped_reconstructions(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    x_hat = torch.randn(3, 3, 8, 8) * 2  # beyond [-1, 1]: clamped in the grid
    path = save_reconstruction_grid(x, x_hat, tmp_path / "samples" / "step_0000001.png")
    assert path == tmp_path / "samples" / "step_0000001.png" and path.is_file()
    top, bottom = split_reconstruction_grid(path)
    assert top.size == bottom.size == (3 * 8 + 4 * 2, 8 + 3)  # 2 px padding around each
    # the split falls in the middle padding: 2 px above the inputs, 1 px above the outputs
    for row, top_pad, images in ((top, 2, x), (bottom, 1, x_hat.clamp(-1, 1))):
        pixels = np.asarray(row)
        for i, image in enumerate(images):
            cell = pixels[top_pad : top_pad + 8, 2 + i * 10 : 2 + i * 10 + 8]
            assert np.array_equal(cell, to_uint8(image).permute(1, 2, 0).numpy()), i


def test_no_other_module_writes_a_grid_of_its_own():
    """Training, evaluation and the report all go through dcvq.images."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "images.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module == "torchvision.utils":
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Attribute) and node.attr in ("save_image", "make_grid"):
                names = [node.attr]
            if {"save_image", "make_grid"} & set(names):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not offenders, offenders
