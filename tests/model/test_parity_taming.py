"""dcvq's VQGAN backbone against taming-transformers' own modules.

taming's Encoder/Decoder (``taming.modules.diffusionmodules.model``) and dcvq's are built
with the same hyper-parameters; taming's weights (perturbed so that every parameter,
GroupNorm affines included, matters) are copied into dcvq's with a strict
``load_state_dict`` and the outputs compared. The paper's f16 configuration is checked
for parameter count (on the meta device: instant) and, marked slow, for outputs.

Outputs are compared within ``numerics.fp32_tolerance`` (tests/numerics.py), derived
from the network's depth and fan-in, not measured on one CPU: fp32 results move with the
kernels' summation order (AVX2 vs AVX-512). ``test_a_small_mismatch_is_caught`` shows
that it still fails on a wrong GroupNorm eps or a 1e-3 change of one convolution.
"""

from __future__ import annotations

import math

import numerics
import pytest
import torch
from taming.modules.diffusionmodules import model as taming_model
from taming.modules.vqvae import quantize as taming_quantize
from torch import nn

from dcvq.model.autoencoder import Decoder, Encoder
from dcvq.model.vqgan import VQModel
from dcvq.quantizers import VectorQuantizer

F16 = dict(
    ch=128,
    ch_mult=(1, 1, 2, 2, 4),
    num_res_blocks=2,
    attn_resolutions=(16,),
    resolution=256,
    z_channels=256,
)
# Small configurations that still exercise every module kind: several levels,
# channel changes (nin_shortcut), attention inside a level and in the middle block.
SMALL = {
    "two_levels": dict(
        ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), resolution=32,
        z_channels=8,
    ),
    "three_levels": dict(
        ch=32, ch_mult=(1, 1, 2), num_res_blocks=2, attn_resolutions=(8,), resolution=32,
        z_channels=16,
    ),
}  # fmt: skip


def taming_encoder(cfg: dict) -> nn.Module:
    return taming_model.Encoder(
        **cfg, out_ch=3, in_channels=3, dropout=0.0, resamp_with_conv=True, double_z=False
    )


def taming_decoder(cfg: dict) -> nn.Module:
    return taming_model.Decoder(**cfg, out_ch=3, in_channels=3, dropout=0.0, resamp_with_conv=True)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def perturb_(module: nn.Module, seed: int) -> nn.Module:
    """Moves every parameter off its default init (GroupNorm weight 1 / bias 0 would
    hide a wrongly wired norm), keeping activations of order one."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        noise = torch.randn(p.shape, generator=gen)
        if "norm" in name:
            p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * noise)
        else:
            p.add_(0.1 * p.std().nan_to_num(0.0) * noise)
    return module


def copy_into(dst: nn.Module, src: nn.Module) -> nn.Module:
    dst.load_state_dict(src.state_dict(), strict=True)
    return dst


def assert_same_structure(a: nn.Module, b: nn.Module) -> None:
    sa = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    sb = {k: tuple(v.shape) for k, v in b.state_dict().items()}
    assert sa == sb
    assert n_params(a) == n_params(b)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def assert_close_fp32(out: torch.Tensor, ref: torch.Tensor, *modules: nn.Module) -> None:
    diff, tol = max_abs_diff(out, ref), numerics.fp32_tolerance(ref, *modules)
    assert diff <= tol, f"max abs difference {diff:.3g} > fp32 tolerance {tol:.3g}"


# ---------------------------------------------------------------- parameter counts


def test_f16_parameter_count_equals_taming():
    with torch.device("meta"):
        t_enc, t_dec = taming_encoder(F16), taming_decoder(F16)
        d_enc, d_dec = Encoder(**F16), Decoder(**F16)
    assert_same_structure(t_enc, d_enc)
    assert_same_structure(t_dec, d_dec)
    # taming's published f16 model: 29.3M encoder, 42.4M decoder parameters.
    assert n_params(d_enc) == n_params(t_enc) and 29_000_000 < n_params(d_enc) < 30_000_000
    assert n_params(d_dec) == n_params(t_dec) and 42_000_000 < n_params(d_dec) < 43_000_000


def test_f16_vqmodel_parameter_count():
    """VQModel = encoder + decoder + two 1x1 convs 256->256 + the codebook."""
    with torch.device("meta"):
        t_enc, t_dec = taming_encoder(F16), taming_decoder(F16)
        model = VQModel(VectorQuantizer(1024, 256), embed_dim=256, **F16)
    convs = 2 * (256 * 256 + 256)
    assert n_params(model) == n_params(t_enc) + n_params(t_dec) + convs + 1024 * 256


# ---------------------------------------------------------------- encoder / decoder


def check_encoder(cfg: dict, perturb=None) -> None:
    """``perturb(dcvq_module)``: a deliberate mismatch, for the test that must fail."""
    torch.manual_seed(0)
    ref = perturb_(taming_encoder(cfg), seed=1)
    ours = copy_into(Encoder(**cfg), ref)
    assert n_params(ours) == n_params(ref)
    if perturb is not None:
        perturb(ours)
    x = torch.randn(2, 3, cfg["resolution"], cfg["resolution"], requires_grad=True)
    out_ref, out = ref(x), ours(x)
    side = cfg["resolution"] // 2 ** (len(cfg["ch_mult"]) - 1)
    assert out.shape == (2, cfg["z_channels"], side, side)
    assert_close_fp32(out, out_ref, ref)
    # Backward too: same gradients w.r.t. the input (the same sums, transposed).
    w = torch.randn_like(out)
    (g_ref,) = torch.autograd.grad((out_ref * w).sum(), x)
    (g,) = torch.autograd.grad((out * w).sum(), x)
    assert_close_fp32(g, g_ref, ref)


def check_decoder(cfg: dict, perturb=None) -> None:
    torch.manual_seed(0)
    ref = perturb_(taming_decoder(cfg), seed=2)
    ours = copy_into(Decoder(**cfg), ref)
    assert n_params(ours) == n_params(ref)
    if perturb is not None:
        perturb(ours)
    side = cfg["resolution"] // 2 ** (len(cfg["ch_mult"]) - 1)
    z = torch.randn(2, cfg["z_channels"], side, side, requires_grad=True)
    out_ref, out = ref(z), ours(z)
    assert out.shape == (2, 3, cfg["resolution"], cfg["resolution"])
    assert_close_fp32(out, out_ref, ref)
    w = torch.randn_like(out)
    (g_ref,) = torch.autograd.grad((out_ref * w).sum(), z)
    (g,) = torch.autograd.grad((out * w).sum(), z)
    assert_close_fp32(g, g_ref, ref)
    assert ours.last_layer is ours.conv_out.weight


@pytest.mark.parametrize("name", list(SMALL))
def test_encoder_matches_taming(name):
    check_encoder(SMALL[name])


@pytest.mark.parametrize("name", list(SMALL))
def test_decoder_matches_taming(name):
    check_decoder(SMALL[name])


# ---------------------------------------------------------------- full model


def taming_pipeline(cfg: dict, n_codes: int, embed_dim: int, legacy: bool):
    """taming's VQModel without Lightning: the same five modules, called in its order."""
    enc, dec = taming_encoder(cfg), taming_decoder(cfg)
    quant_conv = nn.Conv2d(cfg["z_channels"], embed_dim, 1)
    post_quant_conv = nn.Conv2d(embed_dim, cfg["z_channels"], 1)
    vq = taming_quantize.VectorQuantizer2(n_codes, embed_dim, beta=0.25, legacy=legacy)
    with torch.no_grad():
        # A spread-out codebook (as after training) so that no argmin is a near-tie.
        vq.embedding.weight.normal_()

    def forward(x):
        z_q, loss, (_, _, idx) = vq(quant_conv(enc(x)))
        return dec(post_quant_conv(z_q)), loss, idx

    modules = dict(
        encoder=enc, decoder=dec, quant_conv=quant_conv, post_quant_conv=post_quant_conv, vq=vq
    )
    return forward, modules


def dcvq_model_like(modules: dict, cfg: dict, n_codes: int, embed_dim: int, legacy: bool):
    model = VQModel(
        VectorQuantizer(n_codes, embed_dim, beta=0.25, legacy_beta=legacy),
        embed_dim=embed_dim,
        **cfg,
    )
    for part in ("encoder", "decoder", "quant_conv", "post_quant_conv"):
        copy_into(getattr(model, part), modules[part])
    model.quantizer.codebook.embedding.load_state_dict(modules["vq"].embedding.state_dict())
    return model


def check_full_model(cfg: dict, batch: int, n_codes: int, legacy: bool, perturb=None) -> None:
    torch.manual_seed(0)
    embed_dim = cfg["z_channels"]
    ref_forward, modules = taming_pipeline(cfg, n_codes, embed_dim, legacy)
    perturb_(modules["encoder"], seed=3)
    perturb_(modules["decoder"], seed=4)
    model = dcvq_model_like(modules, cfg, n_codes, embed_dim, legacy)
    if perturb is not None:
        perturb(model)
    x = torch.rand(batch, 3, cfg["resolution"], cfg["resolution"]) * 2 - 1
    with torch.no_grad():
        x_ref, loss_ref, idx_ref = ref_forward(x)
        x_hat, loss, info = model(x)
    assert torch.equal(info["indices"].reshape(-1), idx_ref.reshape(-1))
    # Equal codes, so the outputs differ only by the decoder's rounding: taming feeds it
    # the straight-through z + (z_q - z), one rounding away from dcvq's z_q.
    assert_close_fp32(x_hat, x_ref, modules["post_quant_conv"], modules["decoder"])
    # The VQ loss is a mean of n positive squares: a running sum's relative error is at
    # most eps * sqrt(n) typically (eps * log2(n) if pairwise), whatever the order;
    # (1 + beta) * m against beta * m + m adds two roundings.
    n = idx_ref.numel() * embed_dim
    torch.testing.assert_close(loss, loss_ref, rtol=numerics.EPS32 * (math.sqrt(n) + 2), atol=0)


@pytest.mark.parametrize("legacy", [False, True])
def test_small_full_model_matches_taming(legacy):
    check_full_model(SMALL["three_levels"], batch=2, n_codes=64, legacy=legacy)


@pytest.mark.slow
def test_f16_full_model_matches_taming():
    """The paper's configuration, one 256x256 image (about 20 s on 2 CPU cores)."""
    check_full_model(F16, batch=1, n_codes=1024, legacy=False)


# ---------------------------------------------------------------- the tolerances bite


def _groupnorm_eps(module: nn.Module) -> None:
    """eps 1e-5 (PyTorch's default) instead of taming's 1e-6 in every GroupNorm."""
    for m in module.modules():
        if isinstance(m, nn.GroupNorm):
            m.eps = 1e-5


@torch.no_grad()
def _scale_one_conv(module: nn.Module) -> None:
    """One convolution's weight 1e-3 off (relative), deep inside the network."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    convs[len(convs) // 2].weight.mul_(1 + 1e-3)


@pytest.mark.parametrize("mismatch", [_groupnorm_eps, _scale_one_conv], ids=["eps", "conv"])
@pytest.mark.parametrize(
    "check",
    [
        lambda perturb: check_encoder(SMALL["three_levels"], perturb),
        lambda perturb: check_decoder(SMALL["three_levels"], perturb),
        lambda perturb: check_full_model(SMALL["three_levels"], 2, 64, False, perturb),
    ],
    ids=["encoder", "decoder", "full_model"],
)
def test_a_small_mismatch_is_caught(check, mismatch):
    """The fp32 tolerances are loose enough for any CPU, and still far below the effect
    of a plausible bug (4x to 60x here)."""
    with pytest.raises(AssertionError, match="> fp32 tolerance"):
        check(mismatch)


def test_a_wrong_latent_is_caught_by_the_vq_loss():
    """quant_conv 1e-3 off: the same codes and output, but a VQ loss 2.8e-4 off (50x its
    tolerance)."""

    @torch.no_grad()
    def latent(model: nn.Module) -> None:
        model.quant_conv.weight.mul_(1 + 1e-3)

    with pytest.raises(AssertionError, match="Scalars are not close"):
        check_full_model(SMALL["three_levels"], 2, 64, False, latent)
