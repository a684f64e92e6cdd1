"""The VQGAN loss (dcvq.losses.vqgan) beyond its parity with taming."""

from dcvq.losses import VQGANLoss


def test_perceptual_weight_zero_needs_no_weights():
    loss = VQGANLoss(perceptual_weight=0.0)
    assert loss.perceptual is None
