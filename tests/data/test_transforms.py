"""Decoding of every pixel format to 8-bit RGB, and the resize/crop policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dcvq.data.transforms import (
    INTERPOLATIONS,
    MAX_ASPECT,
    POLICIES,
    resize_crop,
    to_rgb,
    to_tensor,
)


def rgb_array(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    return np.asarray(img)


def test_grayscale_is_replicated():
    img = Image.fromarray(np.array([[0, 128], [200, 255]], dtype=np.uint8), "L")
    out = rgb_array(to_rgb(img))
    assert out.shape == (2, 2, 3)
    assert (out[..., 0] == out[..., 1]).all() and out[1, 1, 2] == 255


def test_rgba_transparency_becomes_white():
    arr = np.zeros((2, 2, 4), dtype=np.uint8)
    arr[0, 0] = (10, 20, 30, 255)  # opaque pixel stays
    out = rgb_array(to_rgb(Image.fromarray(arr, "RGBA")))
    assert tuple(out[0, 0]) == (10, 20, 30)
    assert tuple(out[1, 1]) == (255, 255, 255)


def test_palette_with_and_without_transparency():
    p = Image.new("P", (2, 2), 1)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    assert tuple(rgb_array(to_rgb(p))[0, 0]) == (255, 0, 0)
    p.info["transparency"] = 1
    assert tuple(rgb_array(to_rgb(p))[0, 0]) == (255, 255, 255)


def test_cmyk():
    out = rgb_array(to_rgb(Image.new("CMYK", (2, 2), (0, 255, 255, 0))))
    assert tuple(out[0, 0]) == (255, 0, 0)


def test_16bit_scaled_by_format_range():
    arr = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    out = rgb_array(to_rgb(img))
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 255 and out[1, 0, 0] == 128
    assert out[1, 1, 0] == 4  # dark stays dark: 1000 / 257


def test_32bit_integer_and_float():
    i = Image.fromarray(np.array([[0, 100]], dtype=np.int32), "I")
    assert tuple(rgb_array(to_rgb(i))[0, :, 0]) == (0, 100)
    f = Image.fromarray(np.array([[0.0, 1.0]], dtype=np.float32), "F")
    assert tuple(rgb_array(to_rgb(f))[0, :, 0]) == (0, 255)


def test_bilevel_and_la():
    assert rgb_array(to_rgb(Image.new("1", (2, 2), 1)))[0, 0, 0] == 255
    assert tuple(rgb_array(to_rgb(Image.new("LA", (2, 2), (0, 0))))[0, 0]) == (255, 255, 255)


def test_exif_orientation_applied():
    img = Image.new("RGB", (4, 2))
    img.getexif()[0x0112] = 6  # orientation: rotate 90 degrees on display
    assert to_rgb(img).size == (2, 4)


def test_to_tensor_range():
    x = to_tensor(Image.new("RGB", (3, 2), (0, 255, 0)))
    assert x.shape == (3, 2, 3)
    assert x[0].eq(-1).all() and x[1].eq(1).all()


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("size", [(40, 24), (24, 40), (5, 3), (16, 16)])
def test_every_policy_gives_the_resolution(policy, size):
    img = Image.new("RGB", size, (1, 2, 3))
    g = torch.Generator().manual_seed(0)
    assert resize_crop(img, 16, policy, g, flip=True).size == (16, 16)


def test_extreme_aspect_ratio_is_bounded():
    img = Image.new("RGB", (4000, 1))
    out = resize_crop(img, 16, "center_crop")
    assert out.size == (16, 16)
    out = resize_crop(img, 16, "random_crop", torch.Generator().manual_seed(1))
    assert out.size == (16, 16)
    assert MAX_ASPECT >= 4  # ordinary photos are never cut


def test_center_crop_matches_torchvision_for_normal_images():
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    arr = np.random.default_rng(0).integers(0, 256, (30, 47, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    ref = TF.center_crop(TF.resize(img, 16, interpolation=InterpolationMode.BILINEAR), 16)
    out = resize_crop(img, 16, "center_crop", interpolation="bilinear")
    assert np.array_equal(np.asarray(out), np.asarray(ref))


def test_random_crop_is_a_function_of_the_seed():
    arr = np.random.default_rng(0).integers(0, 256, (20, 60, 3), dtype=np.uint8)
    img = Image.fromarray(arr)

    def crop(seed):
        return np.asarray(resize_crop(img, 16, "random_crop", torch.Generator().manual_seed(seed)))

    assert np.array_equal(crop(3), crop(3))
    assert any(not np.array_equal(crop(3), crop(s)) for s in range(4, 12))


def test_flip_happens_for_some_seeds_only():
    arr = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    outs = [
        np.asarray(resize_crop(img, 16, "center_crop", torch.Generator().manual_seed(s), True))
        for s in range(16)
    ]
    assert any(np.array_equal(o, arr) for o in outs)
    assert any(np.array_equal(o, arr[:, ::-1]) for o in outs)


def test_unknown_policy_and_interpolation():
    img = Image.new("RGB", (8, 8))
    with pytest.raises(ValueError, match="policy"):
        resize_crop(img, 8, "stretch")
    with pytest.raises(ValueError, match="interpolation"):
        resize_crop(img, 8, "squash", interpolation="nearest-ish")
    for name in INTERPOLATIONS:
        assert resize_crop(img, 4, "squash", interpolation=name).size == (4, 4)
