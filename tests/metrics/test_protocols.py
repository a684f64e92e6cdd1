"""The clean and vqct protocols: what each measures and how JPEG changes the numbers."""

from __future__ import annotations

import math

import pytest
import torch
from skimage import data

from dcvq.metrics.protocols import get_protocol, jpeg_roundtrip


def textured_pair(noise: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    """A photo crop in [-1, 1] and a 'reconstruction': the crop plus Gaussian noise and
    an offset, so that it overshoots [-1, 1] in places."""
    a = torch.from_numpy(data.astronaut()[:128, 128:256].copy()).permute(2, 0, 1)[None]
    real = a.float() / 127.5 - 1
    eps = torch.randn(real.shape, generator=torch.Generator().manual_seed(0))
    return real, real + noise * eps + 0.01


def test_clean_constant_images_hand_computed():
    real = torch.full((1, 3, 16, 16), 100 / 127.5 - 1)
    recon = torch.full((1, 3, 16, 16), 110 / 127.5 - 1)
    m = get_protocol("clean").measure(real, recon)
    assert m.per_image["l1"].item() == pytest.approx(10 / 255)
    assert m.per_image["l2"].item() == pytest.approx((10 / 255) ** 2)
    assert m.per_image["psnr"].item() == pytest.approx(20 * math.log10(25.5))
    assert m.real.dtype == torch.uint8 and int(m.fake[0, 0, 0, 0]) == 110


def test_clean_measures_the_clamped_8bit_output():
    real = torch.zeros(1, 3, 16, 16)
    recon = torch.full((1, 3, 16, 16), 5.0)  # far outside: clamps to 1 -> 255
    m = get_protocol("clean").measure(real, recon)
    assert m.per_image["l1"].item() == pytest.approx((255 - 128) / 255)


def test_vqct_l1_l2_on_minus1_1_scale_with_unclamped_output():
    real = torch.zeros(1, 3, 16, 16)
    recon = torch.full((1, 3, 16, 16), 5.0)
    m = get_protocol("vqct").measure(real, recon)
    assert m.per_image["l1"].item() == pytest.approx(5.0)
    assert m.per_image["l2"].item() == pytest.approx(25.0)


def test_jpeg_roundtrip_is_lossy_on_texture_and_keeps_shape():
    real, _ = textured_pair()
    u8 = ((real + 1) * 127.5).round().to(torch.uint8)
    out = jpeg_roundtrip(u8)
    assert out.shape == u8.shape and out.dtype == torch.uint8
    assert not torch.equal(out, u8)
    assert (out.float() - u8.float()).abs().mean() < 10  # quality 75: close, not equal


def test_vqct_changes_the_numbers_the_way_it_should():
    real, recon = textured_pair(noise=0.02)  # an accurate reconstruction (~40 dB)
    assert recon.max() > 1 and recon.min() < -1
    clean = get_protocol("clean").measure(real, recon).per_image
    vqct = get_protocol("vqct").measure(real, recon).per_image
    # JPEG adds its own error to both 8-bit images: PSNR drops
    assert vqct["psnr"].item() < clean["psnr"].item() - 0.5
    # L1/L2 ignore the JPEG and the clamp: exactly the float errors on the [-1, 1] scale
    assert vqct["l1"].item() == pytest.approx((recon - real).abs().mean().item(), rel=1e-6)
    assert vqct["l2"].item() == pytest.approx((recon - real).pow(2).mean().item(), rel=1e-6)
    # ... about twice (L1) / four times (L2) the [0, 1]-scale errors of the clamped,
    # rounded images
    assert vqct["l1"].item() == pytest.approx(2 * clean["l1"].item(), rel=0.1)
    assert vqct["l2"].item() == pytest.approx(4 * clean["l2"].item(), rel=0.1)


def test_vqct_jpeg_hides_high_frequency_errors():
    # The other side of the same coin: JPEG discards fine noise in the reconstruction,
    # so a noisy reconstruction scores a higher PSNR under vqct than under clean.
    real, recon = textured_pair(noise=0.1)
    clean = get_protocol("clean").measure(real, recon).per_image
    vqct = get_protocol("vqct").measure(real, recon).per_image
    assert vqct["psnr"].item() > clean["psnr"].item() + 1


def test_vqct_identical_images_still_perfect():
    real, _ = textured_pair()
    m = get_protocol("vqct").measure(real, real.clone()).per_image
    assert m["l1"].item() == 0 and m["ssim"].item() == pytest.approx(1.0)


def test_unknown_protocol_names_the_choices():
    with pytest.raises(ValueError, match="clean"):
        get_protocol("pytorch-fid")
