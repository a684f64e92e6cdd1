"""Evaluation protocols: how inputs and reconstructions become the measured images.

Numbers are only comparable under the same protocol, so every result names its own.

``clean``: lossless 8-bit images (clamp, round). PSNR, L1 and L2 on the ``[0, 1]``
scale of those images; SSIM is the standard one (Gaussian window, RGB); FID on them.

``vqct``: VQCT's pipeline (the source of the paper's baseline numbers). Both image
sets are clamped, rounded to 8 bits and round-tripped through JPEG at PIL's default
quality (75), in memory; FID and PSNR are measured on those JPEGs. L1 and L2 are mean
absolute / squared errors on the ``[-1, 1]`` scale against the *unclamped* decoder
output. SSIM as VQCT: scikit-image defaults (7x7 uniform window) on PIL grayscale. It
approximates VQCT only: VQCT used pytorch-fid, whose resize to 299 differs slightly
from torch-fidelity's.

LPIPS, where requested, is computed on each protocol's 8-bit images (rescaled to
``[-1, 1]``), i.e. on the same images as PSNR, SSIM and FID.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dcvq.metrics import image as im

PER_IMAGE = ("psnr", "l1", "l2", "ssim")


@dataclass
class Measured:
    """One batch under a protocol: the 8-bit images used for FID / LPIPS and the
    per-image values of :data:`PER_IMAGE` (float64, length B)."""

    real: Tensor
    fake: Tensor
    per_image: dict[str, Tensor]


class Protocol(ABC):
    name: str
    note: str

    @abstractmethod
    def measure(self, real: Tensor, recon: Tensor) -> Measured:
        """``real``: inputs in ``[-1, 1]``; ``recon``: raw decoder output, same shape."""


class Clean(Protocol):
    name = "clean"
    note = (
        "lossless 8-bit images; PSNR/L1/L2 on the [0, 1] scale; SSIM with an 11x11 "
        "Gaussian window on RGB; FID with torch-fidelity's Inception"
    )

    def measure(self, real: Tensor, recon: Tensor) -> Measured:
        a, b = im.to_uint8(real), im.to_uint8(recon)
        ua, ub = im.uint8_to_unit(a), im.uint8_to_unit(b)
        values = {
            "psnr": im.psnr(a, b),
            "l1": im.l1(ua, ub),
            "l2": im.l2(ua, ub),
            "ssim": im.ssim(a, b, window="gaussian"),
        }
        return Measured(a, b, values)


def jpeg_roundtrip(x: Tensor) -> Tensor:
    """``uint8 B x 3 x H x W`` -> the same images after a PIL JPEG save/load.

    ``Image.save`` with no options, as VQCT saved its ``.jpg`` files: quality 75 and
    PIL's default chroma subsampling.
    """
    out = []
    for img in x.cpu().permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG")
        buf.seek(0)
        with Image.open(buf) as decoded:
            out.append(np.asarray(decoded.convert("RGB")))
    if not out:
        return x.clone()
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous().to(x.device)


class VQCT(Protocol):
    name = "vqct"
    note = (
        "approximates VQCT's protocol: inputs and reconstructions round-tripped through "
        "JPEG quality 75; L1/L2 on the [-1, 1] scale with the unclamped output; PSNR and "
        "SSIM (7x7 uniform, grayscale) on the 8-bit JPEGs; FID with torch-fidelity, whose "
        "resize to 299 differs slightly from the pytorch-fid VQCT used"
    )

    def measure(self, real: Tensor, recon: Tensor) -> Measured:
        a = jpeg_roundtrip(im.to_uint8(real))
        b = jpeg_roundtrip(im.to_uint8(recon))
        values = {
            "psnr": im.psnr(a, b),
            "l1": im.l1(real, recon),
            "l2": im.l2(real, recon),
            "ssim": im.ssim(a, b, window="uniform", grayscale=True),
        }
        return Measured(a, b, values)


PROTOCOLS: dict[str, type[Protocol]] = {"clean": Clean, "vqct": VQCT}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]()
    except KeyError:
        raise ValueError(
            f"eval.protocol={name!r} unknown: expected one of {sorted(PROTOCOLS)}"
        ) from None
