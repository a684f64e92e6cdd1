"""LPIPS (dcvq.metrics.lpips): local VGG16 weights only, frozen, clear errors."""

import pytest
import torch

from dcvq.metrics import LPIPS


def test_missing_weights_error_says_how_to_fetch():
    with pytest.raises(FileNotFoundError, match="make weights") as info:
        LPIPS()
    assert "loss.lpips_weights" in str(info.value) and "perceptual_weight=0" in str(info.value)
    with pytest.raises(FileNotFoundError, match="loss.lpips_weights=/nowhere/vgg.pth"):
        LPIPS("/nowhere/vgg.pth")


def test_standin_weights_load_through_the_real_path(lpips_weights):
    lp = LPIPS()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    d_same = lp(x, x)
    d_other = lp(x, torch.rand(2, 3, 32, 32) * 2 - 1)
    assert d_same.shape == (2, 1, 1, 1) and torch.all(d_same.abs() < 1e-6)
    assert torch.all(d_other > 0)
    assert not any(p.requires_grad for p in lp.parameters())
    lp.train()
    assert not lp.training  # frozen


def test_explicit_weights_path(standin_vgg16_file):
    LPIPS(standin_vgg16_file)
    bad = standin_vgg16_file.parent / "not_vgg.pth"
    torch.save({"classifier.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(RuntimeError, match="not a torchvision VGG16"):
        LPIPS(bad)
