"""Image grids: every PNG grid dcvq writes is written here.

Reconstruction grids: one layout, written for training (``samples/step_*.png``) and
``python -m dcvq.evaluate`` (``grid.png``), and read back here for the report's figure.
The layout: the inputs in the top row, their reconstructions in the bottom row, one
column per image, torchvision's 2-pixel padding.

Sample grids (``python -m dcvq.prior``'s ``samples.png``): generated images only, row by
row, same padding.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import save_image


def save_reconstruction_grid(x: torch.Tensor, x_hat: torch.Tensor, path: str | Path) -> Path:
    """Write ``x`` above ``x_hat`` (both ``B x 3 x H x W`` in [-1, 1]; ``x_hat`` is clamped)
    as a PNG at ``path``, creating its folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = torch.cat([x, x_hat.clamp(-1, 1)]).float().add(1).div(2)
    save_image(grid, path, nrow=len(x), padding=2)
    return path


def save_sample_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Write ``images`` (``B x 3 x H x W`` in [-1, 1], clamped) as a PNG grid of ``nrow``
    images a row at ``path``, creating its folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.clamp(-1, 1).float().add(1).div(2), path, nrow=nrow, padding=2)
    return path


def split_reconstruction_grid(path: str | Path) -> tuple[Image.Image, Image.Image]:
    """A grid written by :func:`save_reconstruction_grid` -> (inputs row, reconstructions row)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    half = im.height // 2
    return im.crop((0, 0, im.width, half)), im.crop((0, half, im.width, im.height))
