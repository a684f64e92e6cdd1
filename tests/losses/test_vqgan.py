"""The VQGAN loss (dcvq.losses.vqgan) beyond its parity with taming."""

import numerics
import torch

from dcvq.losses import VQGANLoss


def test_perceptual_weight_zero_needs_no_weights():
    loss = VQGANLoss(perceptual_weight=0.0)
    assert loss.perceptual is None


def test_lpips_runs_its_vgg_under_the_steps_bf16_autocast(lpips_weights):
    """The perceptual term as the training step computes it under autocast. fp32 and fp16
    autocast: exactly the ``lpips`` package's own fp32 computation (fp16 could overflow
    in VGG's features). bf16: VGG's 13 convolutions take bf16 inputs, then the
    normalisation and the rest are fp32. LPIPS is a smooth function of the features,
    each a relative error eps_bf16 * sqrt(13) of their scale away (``numerics.amp_kappa``,
    the largest of the batch's images), and a relative change of the features moves a
    distance between two images relatively: the bound is that kappa times the fp32
    LPIPS. Images here are far enough apart for that first-order view (LPIPS ~ 0.01 and
    ~ 0.15 with the stand-in VGG); for near-identical images (LPIPS ~ 1e-4) rounding
    boundaries add a few 1e-6 on top."""
    perceptual = VQGANLoss(disc_start=0).perceptual
    torch.manual_seed(0)
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    y = torch.cat([(x[:2] + 0.2 * torch.randn_like(x[:2])).clamp(-1, 1), torch.rand_like(x[2:])])
    ref = perceptual.net(x, y)  # the lpips package's forward, fp32
    assert torch.equal(perceptual(x, y), ref)
    with torch.autocast("cpu", dtype=torch.float16):
        assert torch.equal(perceptual(x, y), ref)
    kappa = numerics.amp_kappa(torch.bfloat16, 13, len(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = perceptual(x, y)
        assert got.dtype == torch.float32
        assert ((got - ref).abs() <= kappa * ref).all()
        # a real mismatch fails: VGG's inputs not standardised (lpips' ScalingLayer)
        scaling = perceptual.net.scaling_layer
        scaling.shift.zero_(), scaling.scale.fill_(1.0)
        unscaled = perceptual(x, y)
    assert ((unscaled - ref).abs() > kappa * ref).any()
