"""Image decoding and resize/crop policies, with randomness from an explicit generator.

Every random choice (crop offset, flip) is drawn from a ``torch.Generator`` seeded per
sample by the sampler, never from global state: a resumed run or another DDP layout
sees exactly the same crops.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from dcvq.errors import ConfigError

log = logging.getLogger(__name__)

POLICIES = ("random_crop", "center_crop", "squash")
# Bilinear by default: torchvision's T.Resize default, and so VQCT's pipeline (the
# protocol of the paper's baseline numbers), and taming's (albumentations'
# SmallestMaxSize, cv2 INTER_LINEAR). PIL images are resampled with antialiasing.
INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "lanczos": InterpolationMode.LANCZOS,
}

# Longest side / shortest side beyond which an image is first cut down along its long
# side: a 1 x 100000 strip resized to shorter side 256 would need 25 G pixels. Real
# photos (COCO, ADE20K, CUB, CelebA-HQ) stay far below this, so their results are untouched.
MAX_ASPECT = 8.0


def _exif_transpose(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block keeps the pixels as stored."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception as e:  # malformed EXIF must not cost us a decodable image
        log.warning("ignoring unreadable EXIF orientation (%s)", e)
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image (grayscale, RGBA, palette, CMYK, 16-bit, EXIF-rotated) -> 8-bit RGB.

    Transparent pixels are composited onto white. 16-bit images are scaled by the range
    of their format (65535 -> 255), not by their own maximum, so a dark 16-bit image
    stays dark.
    """
    img = _exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        elif img.mode == "F" and arr.size and float(np.nanmax(arr)) <= 1.0:
            scale = 255.0  # float images in [0, 1]
        elif arr.size and float(np.nanmax(arr)) > 255:
            scale = 255.0 / 65535.0  # 32-bit container holding 16-bit data (old Pillow PNGs)
        else:
            scale = 1.0
        arr = np.nan_to_num(arr * scale + 0.5, nan=0.0)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "La", "PA", "RGBa") or (
        img.mode == "P" and "transparency" in img.info
    ):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")


def to_tensor(img: Image.Image) -> Tensor:
    """8-bit RGB PIL -> float ``3 x H x W`` in [-1, 1]."""
    return TF.pil_to_tensor(img).float().div(127.5).sub(1.0)


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ConfigError(f"dataset.policy={policy!r} unknown: expected one of {POLICIES}")
    return policy


def check_interpolation(interpolation: str) -> str:
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(
            f"dataset.interpolation={interpolation!r} unknown: expected one of "
            f"{tuple(INTERPOLATIONS)}"
        )
    return interpolation


def _limit_aspect(img: Image.Image) -> Image.Image:
    """Centre-cut the long side to ``MAX_ASPECT`` times the short one (see MAX_ASPECT)."""
    w, h = img.size
    short, long = min(w, h), max(w, h)
    if short == 0 or long <= MAX_ASPECT * short:
        return img
    keep = int(MAX_ASPECT * short)
    start = (long - keep) // 2
    box = (start, 0, start + keep, h) if w > h else (0, start, w, start + keep)
    return img.crop(box)


def resize_crop(
    img: Image.Image,
    resolution: int,
    policy: str,
    generator: torch.Generator | None = None,
    flip: bool = False,
    interpolation: str = "bilinear",
) -> Image.Image:
    """Apply ``policy`` to reach ``resolution x resolution``.

    ``random_crop``: shorter side to ``resolution``, random crop (+ optional flip).
    ``center_crop``: shorter side to ``resolution``, centre crop (evaluation).
    ``squash``: resize both sides to ``resolution`` (VQCT's ADE20K handling).
    Images smaller than the crop are upscaled by the same rules. ``interpolation`` is
    ``bicubic`` (default), ``bilinear`` (torchvision's default, VQCT) or ``lanczos``.
    """
    check_policy(policy)
    mode = INTERPOLATIONS[check_interpolation(interpolation)]
    if policy == "squash":
        out = TF.resize(img, [resolution, resolution], interpolation=mode, antialias=True)
    else:
        img = _limit_aspect(img)
        w, h = img.size
        # explicit target size: torchvision truncates the long side, which can leave it one
        # pixel short of `resolution` for extreme ratios; never go below the crop size
        if w <= h:
            size = [max(resolution, int(resolution * h / w)), resolution]
        else:
            size = [resolution, max(resolution, int(resolution * w / h))]
        out = TF.resize(img, size, interpolation=mode, antialias=True)
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
