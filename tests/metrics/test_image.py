"""Per-image metrics against hand-computed values and scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from skimage.metrics import structural_similarity

from dcvq.metrics.image import PSNR_MAX_DB, l1, l2, psnr, rgb_to_luma, ssim, to_uint8


def const(value: int, n: int = 1, size: int = 16) -> torch.Tensor:
    return torch.full((n, 3, size, size), value, dtype=torch.uint8)


def photo_crops() -> list[np.ndarray]:
    return [data.astronaut()[64:128, 96:160], data.chelsea()[40:104, 100:164]]


def noisy(a: np.ndarray, amp: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(-amp, amp + 1, a.shape)
    return np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)


def as_batch(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()


def test_psnr_of_constant_offset():
    # MSE = 10^2 on the 0..255 scale -> PSNR = 20 log10(255 / 10)
    got = psnr(const(100), const(110))
    assert got.item() == pytest.approx(20 * math.log10(25.5), abs=1e-9)


def test_psnr_per_image_and_capped_for_identical_images():
    a = torch.cat([const(0), const(50)])
    b = torch.cat([const(0), const(51)])
    got = psnr(a, b)
    assert got.shape == (2,)
    assert got[0].item() == pytest.approx(PSNR_MAX_DB)
    assert got[1].item() == pytest.approx(20 * math.log10(255.0), abs=1e-9)


def test_l1_l2_of_constant_offset_on_unit_scale():
    a, b = const(100).double() / 255, const(110).double() / 255
    assert l1(a, b).item() == pytest.approx(10 / 255)
    assert l2(a, b).item() == pytest.approx((10 / 255) ** 2)


def test_l1_l2_average_within_each_image():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.zeros(2, 3, 4, 4)
    b[0, :, :2] = 1.0  # half the pixels off by 1
    b[1] = -0.5
    assert l1(a, b).tolist() == pytest.approx([0.5, 0.5])
    assert l2(a, b).tolist() == pytest.approx([0.5, 0.25])


def test_to_uint8_clamps_and_rounds_half_up():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0, 2 * (100.5 / 255) - 1])
    assert to_uint8(x).tolist() == [0, 0, 128, 255, 255, 101]
    # the dataset's own encoding k / 127.5 - 1 comes back exactly
    k = torch.arange(256, dtype=torch.float32)
    assert torch.equal(to_uint8(k / 127.5 - 1).long(), k.long())


def test_ssim_gaussian_matches_skimage():
    for i, a in enumerate(photo_crops()):
        b = noisy(a, 40, seed=i)
        want = structural_similarity(
            a,
            b,
            data_range=255,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert ssim(as_batch(a), as_batch(b)).item() == pytest.approx(want, abs=1e-9)


def test_ssim_uniform_grayscale_matches_skimage_defaults_on_pil_luma():
    for i, a in enumerate(photo_crops()):
        b = noisy(a, 25, seed=10 + i)
        la = np.asarray(Image.fromarray(a).convert("L"))
        lb = np.asarray(Image.fromarray(b).convert("L"))
        want = structural_similarity(la, lb)  # VQCT's call
        got = ssim(as_batch(a), as_batch(b), window="uniform", grayscale=True)
        assert got.item() == pytest.approx(want, abs=1e-9)


def test_ssim_identical_is_one_and_batched():
    a = torch.cat([as_batch(c) for c in photo_crops()])
    assert ssim(a, a).tolist() == pytest.approx([1.0, 1.0])


def test_rgb_to_luma_is_pils():
    a = photo_crops()[0]
    want = np.asarray(Image.fromarray(a).convert("L"))
    assert np.array_equal(rgb_to_luma(as_batch(a))[0, 0].numpy(), want)


def test_uint8_metrics_refuse_floats():
    with pytest.raises(TypeError):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="at least"):
        ssim(const(0, size=8), const(0, size=8))
