"""Image decoding and resize/crop policies, with randomness from an explicit generator.

Every random choice (crop offset, flip) is drawn from a ``torch.Generator`` seeded per
sample by the sampler, never from global state: a resumed run or another DDP layout
sees exactly the same crops.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

POLICIES = ("random_crop", "center_crop", "squash")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image (grayscale, RGBA, palette, CMYK, 16-bit, EXIF-rotated) -> 8-bit RGB."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit -> 8-bit by the value range of the format, not of the image
        scale = 255.0 / 65535.0 if arr.max() > 255 or img.mode.startswith("I;16") else 1.0
        img = Image.fromarray(np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")


def to_tensor(img: Image.Image) -> Tensor:
    """8-bit RGB PIL -> float ``3 x H x W`` in [-1, 1]."""
    return TF.pil_to_tensor(img).float().div(127.5).sub(1.0)


def resize_crop(
    img: Image.Image, resolution: int, policy: str, generator: torch.Generator | None = None,
    flip: bool = False,
) -> Image.Image:
    """Apply ``policy`` to reach ``resolution x resolution``.

    ``random_crop``: shorter side to ``resolution``, random crop (+ optional flip).
    ``center_crop``: shorter side to ``resolution``, centre crop (evaluation).
    ``squash``: resize both sides to ``resolution`` (VQCT's ADE20K handling).
    Images smaller than the crop are upscaled by the same rules.
    """
    if policy not in POLICIES:
        raise ValueError(f"resize policy {policy!r} unknown: expected one of {POLICIES}")
    bicubic = InterpolationMode.BICUBIC
    if policy == "squash":
        out = TF.resize(img, [resolution, resolution], interpolation=bicubic, antialias=True)
    else:
        out = TF.resize(img, resolution, interpolation=bicubic, antialias=True)
        w, h = out.size
        if policy == "center_crop":
            out = TF.center_crop(out, [resolution, resolution])
        else:
            top = int(torch.randint(0, h - resolution + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - resolution + 1, (1,), generator=generator))
            out = TF.crop(out, top, left, resolution, resolution)
    if flip and bool(torch.rand((), generator=generator) < 0.5):
        out = TF.hflip(out)
    return out
