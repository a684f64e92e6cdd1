"""Per-image reconstruction metrics: each function maps a batch to one value per image.

Averages are taken by the caller over the whole split (per image, then mean), which is
how VQCT and most tokenizer papers report them. 8-bit inputs are ``uint8`` tensors
``B x 3 x H x W``; float inputs are on whatever scale the protocol chose.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# PSNR is infinite for identical images, which averages to inf and is not valid JSON:
# the MSE is floored so that the cap is 100 dB (far above any real reconstruction).
PSNR_MAX_DB = 100.0


def to_uint8(x: Tensor) -> Tensor:
    """``[-1, 1]`` float -> ``uint8``: clamp, then round half up.

    Same arithmetic as VQCT's ``save_image_tensor2pillow`` (and torchvision's
    ``save_image``): ``(x + 1) * 0.5 * 255 + 0.5``, truncated.
    """
    y = x.detach().float().clamp(-1.0, 1.0).add(1.0).mul(0.5).mul(255.0).add(0.5)
    return y.floor().clamp(0, 255).to(torch.uint8)


def uint8_to_unit(x: Tensor) -> Tensor:
    """``uint8`` -> float64 in ``[0, 1]``."""
    return x.double() / 255.0


def l1(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute error per image (float64), on the scale of the inputs."""
    return (a.double() - b.double()).abs().flatten(1).mean(1)


def l2(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared error per image (float64), on the scale of the inputs."""
    return (a.double() - b.double()).pow(2).flatten(1).mean(1)


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """PSNR in dB per image of two ``uint8`` batches (peak 255, all channels at once).

    The scale is irrelevant to the value: this equals PSNR on ``[0, 1]`` images.
    """
    if a.dtype != torch.uint8 or b.dtype != torch.uint8:
        raise TypeError("psnr expects uint8 images")
    mse = l2(a, b)
    floor = 255.0**2 * 10 ** (-PSNR_MAX_DB / 10)
    return 10.0 * torch.log10(255.0**2 / mse.clamp_min(floor))


def rgb_to_luma(x: Tensor) -> Tensor:
    """``uint8 B x 3 x H x W`` -> ``uint8 B x 1 x H x W`` exactly as PIL's ``convert("L")``.

    ITU-R 601-2 luma with PIL's fixed-point rounding, so SSIM on grayscale matches
    tools that convert with PIL (VQCT does).
    """
    if x.dtype != torch.uint8:
        raise TypeError("rgb_to_luma expects uint8 images")
    r, g, b = x.long().unbind(1)
    y = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16
    return y.unsqueeze(1).to(torch.uint8)


def _window(kind: str, device: torch.device) -> tuple[Tensor, float]:
    """2-D window and covariance normalisation, as scikit-image builds them."""
    if kind == "gaussian":
        # scipy's gaussian_filter with sigma 1.5, truncate 3.5 -> radius 5 (11 taps);
        # population covariance, as in Wang et al. 2004.
        sigma, radius = 1.5, 5
        t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
        g = torch.exp(-0.5 * (t / sigma) ** 2)
        g = g / g.sum()
        return torch.outer(g, g), 1.0
    if kind == "uniform":
        # scikit-image's default: 7x7 mean filter with sample covariance.
        size = 7
        n = size * size
        w = torch.full((size, size), 1.0 / n, dtype=torch.float64, device=device)
        return w, n / (n - 1.0)
    raise ValueError(f"SSIM window {kind!r} unknown: expected 'gaussian' or 'uniform'")


def ssim(a: Tensor, b: Tensor, *, window: str = "gaussian", grayscale: bool = False) -> Tensor:
    """Mean SSIM per image of two ``uint8`` batches (data range 255), in float64.

    Equals ``skimage.metrics.structural_similarity(..., data_range=255)`` averaged over
    channels: ``window="gaussian"`` matches ``gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False`` (the standard SSIM), ``window="uniform"`` matches
    scikit-image's defaults. Only windows that fit inside the image are averaged (as
    scikit-image crops its border), so a valid convolution gives the same numbers.
    ``grayscale`` first converts RGB to PIL's luma.
    """
    if a.dtype != torch.uint8 or b.dtype != torch.uint8:
        raise TypeError("ssim expects uint8 images")
    if grayscale:
        a, b = rgb_to_luma(a), rgb_to_luma(b)
    w, cov_norm = _window(window, a.device)
    k = w.shape[-1]
    if min(a.shape[-2:]) < k:
        raise ValueError(f"SSIM needs images of at least {k}x{k} pixels, got {tuple(a.shape)}")
    c = a.shape[1]
    weight = w.expand(c, 1, k, k)
    x, y = a.double(), b.double()

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(t, weight, groups=c)

    ux, uy = filt(x), filt(y)
    vx = cov_norm * (filt(x * x) - ux * ux)
    vy = cov_norm * (filt(y * y) - uy * uy)
    vxy = cov_norm * (filt(x * y) - ux * uy)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)
