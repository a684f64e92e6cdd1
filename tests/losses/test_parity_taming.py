"""dcvq's discriminator and VQGAN loss against taming-transformers' own classes.

taming's ``VQLPIPSWithDiscriminator`` needs, at construction, torchvision's VGG16 (a
strict load of the full state dict from the torch hub cache) and its LPIPS linear heads
at the cwd-relative path ``taming/modules/autoencoder/lpips/vgg.pth`` (downloaded when
missing). Here both come from local files: a stand-in VGG16 (the conftest's random
features; the classifier as stride-0 tensors, so the file stays a few MB) and the
``lpips`` package's ``vgg.pth`` (byte-identical to taming's: the md5 is checked). Any
attempt to reach the network fails the test.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import numerics
import pytest
import taming.util as taming_util
import torch
from taming.modules.discriminator import model as taming_disc
from taming.modules.losses import vqperceptual as taming_loss_mod
from torch import nn

from dcvq.losses.discriminator import NLayerDiscriminator
from dcvq.losses.vqgan import VQGANLoss, adaptive_weight
from dcvq.model.autoencoder import Decoder

# taming calls torchvision's vgg16(pretrained=True): deprecation warnings only.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:torchvision.models._utils")

ATOL = 1e-5
DISC_START = 100
TAMING_LPIPS_DIR = "taming/modules/autoencoder/lpips"


# ---------------------------------------------------------------- offline set-up


def _refuse(*args, **kwargs):
    raise AssertionError(f"a test tried to reach the network: {args!r:.200}")


def forbid_network(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(socket.socket, "connect", _refuse)
    mp.setattr(socket, "create_connection", _refuse)
    mp.setattr(torch.hub, "download_url_to_file", _refuse)
    mp.setattr(taming_util, "download", _refuse)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    forbid_network(monkeypatch)


@pytest.fixture(scope="module")
def taming_env(tmp_path_factory, standin_vgg16_file) -> tuple[Path, Path]:
    """(TORCH_HOME, cwd) from which taming's and dcvq's LPIPS load without network."""
    root = tmp_path_factory.mktemp("taming_env")
    # torchvision's vgg16(pretrained=True) loads the FULL state dict strictly: add the
    # classifier to the features-only stand-in, as stride-0 zeros (a few bytes on disk).
    state = torch.load(standin_vgg16_file, map_location="cpu", weights_only=True)
    from torchvision.models import vgg16

    with torch.device("meta"):
        full = vgg16().state_dict()
    for key, value in full.items():
        if key.startswith("classifier."):
            state[key] = torch.zeros(1).expand(value.shape)
    torch_home = root / "torch_home"
    ckpt = torch_home / "hub" / "checkpoints" / standin_vgg16_file.name
    ckpt.parent.mkdir(parents=True)
    torch.save(state, ckpt)

    import lpips

    heads = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    assert hashlib.md5(heads.read_bytes()).hexdigest() == taming_util.MD5_MAP["vgg_lpips"]
    cwd = root / "cwd"
    dst = cwd / TAMING_LPIPS_DIR / taming_util.CKPT_MAP["vgg_lpips"]
    dst.parent.mkdir(parents=True)
    shutil.copyfile(heads, dst)
    return torch_home, cwd


@contextlib.contextmanager
def offline_env(taming_env):
    torch_home, cwd = taming_env
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(torch_home))
        mp.chdir(cwd)
        forbid_network(mp)
        yield


def build_pair(taming_env, perceptual_weight: float, **kw):
    """taming's loss and dcvq's with equal settings and equal discriminator weights."""
    settings = dict(
        disc_start=DISC_START,
        codebook_weight=1.0,
        pixelloss_weight=1.0,
        disc_num_layers=3,
        disc_in_channels=3,
        disc_factor=1.0,
        disc_weight=0.8,
        perceptual_weight=perceptual_weight,
        disc_ndf=64,
        disc_loss="hinge",
    )
    settings.update(kw)
    with offline_env(taming_env):
        torch.manual_seed(0)
        ref = taming_loss_mod.VQLPIPSWithDiscriminator(**settings)
        ours = VQGANLoss(**settings)
    return ref, ours


@pytest.fixture(scope="module")
def built_pair(taming_env):
    ref, ours = build_pair(taming_env, perceptual_weight=1.0)
    return ref, ours, copy.deepcopy(ref.discriminator.state_dict())


@pytest.fixture
def loss_pair(built_pair):
    """Fresh state for each test: same discriminator weights and buffers on both sides,
    both in train mode (taming's LPIPS kept in eval mode: see ``set_train``)."""
    ref, ours, disc_state = built_pair
    for loss in (ref, ours):
        loss.discriminator.load_state_dict(disc_state, strict=True)
        loss.zero_grad(set_to_none=True)
    set_train(ref, ours)
    return ref, ours


def set_train(ref: nn.Module, ours: nn.Module) -> None:
    # In train mode taming's LPIPS applies its linear heads' dropout (p=0.5): a random
    # loss with the same expectation. dcvq's LPIPS is always in eval mode; compare
    # taming's deterministic (eval) LPIPS.
    ref.train()
    ref.perceptual_loss.eval()
    ours.train()


def small_generator(seed: int = 0):
    """x, and x_hat from a small dcvq Decoder whose conv_out.weight is the last layer."""
    torch.manual_seed(seed)
    dec = Decoder(
        ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), resolution=32,
        z_channels=8,
    )  # fmt: skip
    z = torch.randn(2, 8, 16, 16)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    x_hat = dec(z)
    return dec, x, x_hat


def close(a, b, rtol=1e-5, atol=1e-6) -> None:
    torch.testing.assert_close(
        torch.as_tensor(a).float(), torch.as_tensor(b).float(), rtol=rtol, atol=atol
    )


# ---------------------------------------------------------------- discriminator


def disc_pair(seed: int = 0):
    torch.manual_seed(seed)
    ref = taming_disc.NLayerDiscriminator(input_nc=3, ndf=64, n_layers=3)
    ref.apply(taming_disc.weights_init)
    ours = NLayerDiscriminator(3, 64, 3)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def test_discriminator_matches_taming_train_and_eval():
    ref, ours = disc_pair()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    torch.manual_seed(1)
    # Train mode: BatchNorm on batch statistics; running stats updated alike.
    for _ in range(3):
        x = torch.randn(2, 3, 64, 64)
        out_ref, out = ref.train()(x), ours.train()(x)
        assert out.shape == out_ref.shape == (2, 1, 6, 6)
        assert (out - out_ref).abs().max().item() <= ATOL
    for (k, a), (_, b) in zip(ref.state_dict().items(), ours.state_dict().items(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=k)
    # Eval mode: BatchNorm on the running statistics gathered above.
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out_ref, out = ref.eval()(x), ours.eval()(x)
    assert (out - out_ref).abs().max().item() <= ATOL


def test_discriminator_init_follows_weights_init():
    torch.manual_seed(0)
    ours = NLayerDiscriminator(3, 64, 3)
    convs = [m for m in ours.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 5 and len(bns) == 3
    for conv in convs:
        w = conv.weight.detach()
        assert abs(w.mean().item()) < 0.002
        assert 0.018 < w.std().item() < 0.022
    # pix2pix: no conv bias before a BatchNorm; the first and last convs keep theirs.
    assert [c.bias is not None for c in convs] == [True, False, False, False, True]
    all_bn_w = torch.cat([bn.weight.detach() for bn in bns])
    assert abs(all_bn_w.mean().item() - 1.0) < 0.005
    assert 0.015 < all_bn_w.std().item() < 0.025
    for bn in bns:
        assert torch.all(bn.bias == 0)
    # Same distribution as taming's constructor + weights_init, parameter by parameter.
    ref, _ = disc_pair(seed=1)
    for (k, a), (_, b) in zip(ref.named_parameters(), ours.named_parameters(), strict=True):
        if k.endswith("weight"):
            assert abs(a.std().item() - b.std().item()) < 0.1 * a.std().item(), k
            assert abs(a.mean().item() - b.mean().item()) < 0.005, k
    # Conv biases keep PyTorch's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    for conv in (convs[0], convs[-1]):
        fan_in = conv.weight[0].numel()
        assert conv.bias.abs().max().item() <= fan_in**-0.5


# ---------------------------------------------------------------- loss terms


def test_lpips_matches_taming(loss_pair):
    ref, ours = loss_pair
    torch.manual_seed(3)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    with torch.no_grad():
        d_ref, d = ref.perceptual_loss(x, y), ours.perceptual(x, y)
    assert d.shape == d_ref.shape == (2, 1, 1, 1)
    assert torch.all(d_ref > 0)
    close(d, d_ref)


@pytest.mark.parametrize("step", [DISC_START - 1, DISC_START, DISC_START + 5])
def test_generator_loss_matches_taming(loss_pair, step):
    ref, ours = loss_pair
    dec, x, x_hat = small_generator()
    vq = torch.tensor(0.123)
    t_loss, t_log = ref(vq, x, x_hat, 0, step, last_layer=dec.last_layer, split="train")
    loss, log = ours.generator_loss(x, x_hat, vq, step, dec.last_layer)

    # Per-pixel reconstruction term, and its mean (nll).
    with torch.no_grad():
        rec_ref = (x - x_hat).abs() + ref.perceptual_weight * ref.perceptual_loss(x, x_hat)
        close(ours.reconstruction(x, x_hat), rec_ref)
    close(log["nll"], t_log["train/nll_loss"])
    close(log["vq"], t_log["train/quant_loss"])
    close(loss, t_loss)
    close(log["total"], t_log["train/total_loss"])
    if step >= DISC_START:
        assert t_log["train/disc_factor"].item() == 1.0
        assert t_log["train/d_weight"].item() > 0
        close(log["g"], t_log["train/g_loss"])
        close(log["d_weight"], t_log["train/d_weight"])
    else:
        assert t_log["train/disc_factor"].item() == 0.0
        assert "g" not in log and "d_weight" not in log
    # Same gradients for the generator (decoder) parameters.
    params = list(dec.parameters())
    g_ref = torch.autograd.grad(t_loss, params, retain_graph=True)
    g_ours = torch.autograd.grad(loss, params, retain_graph=True)
    for a, b in zip(g_ref, g_ours, strict=True):
        close(b, a, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("step", [DISC_START - 1, DISC_START + 5])
def test_discriminator_loss_matches_taming(loss_pair, step):
    """Hinge loss times disc_factor, which taming sets to 0 before disc_start."""
    ref, ours = loss_pair
    _, x, x_hat = small_generator()
    vq = torch.tensor(0.123)
    t_d, t_log = ref(vq, x, x_hat, 1, step, split="train")
    d, log = ours.discriminator_loss(x, x_hat, step)
    close(d, t_d)
    if step >= DISC_START:
        assert t_d.item() > 0
        close(log["logits_real"], t_log["train/logits_real"])
        close(log["logits_fake"], t_log["train/logits_fake"])
        g_ref = torch.autograd.grad(t_d, list(ref.discriminator.parameters()))
        g_ours = torch.autograd.grad(d, list(ours.discriminator.parameters()))
        for a, b in zip(g_ref, g_ours, strict=True):
            close(b, a, rtol=1e-4, atol=1e-7)


def test_loss_without_perceptual_matches_taming(loss_pair, monkeypatch):
    ref, _ = loss_pair
    # taming's constructor only stores perceptual_weight (it builds LPIPS whatever the
    # value) and forward tests ``perceptual_weight > 0``: setting it equals passing 0.
    monkeypatch.setattr(ref, "perceptual_weight", 0.0)
    ours = VQGANLoss(disc_start=DISC_START, disc_weight=0.8, perceptual_weight=0.0)
    assert ours.perceptual is None
    ours.discriminator.load_state_dict(ref.discriminator.state_dict(), strict=True)
    set_train(ref, ours)
    dec, x, x_hat = small_generator(seed=1)
    vq = torch.tensor(0.5)
    step = DISC_START + 1
    t_loss, t_log = ref(vq, x, x_hat, 0, step, last_layer=dec.last_layer, split="train")
    loss, log = ours.generator_loss(x, x_hat, vq, step, dec.last_layer)
    close(log["nll"], (x - x_hat).abs().mean())
    close(log["nll"], t_log["train/nll_loss"])
    close(log["g"], t_log["train/g_loss"])
    close(log["d_weight"], t_log["train/d_weight"])
    close(loss, t_loss)
    t_d, _ = ref(vq, x, x_hat, 1, step, split="train")
    d, _ = ours.discriminator_loss(x, x_hat, step)
    close(d, t_d)


# ---------------------------------------------------------------- adaptive weight


def test_adaptive_weight_by_hand():
    """x_hat = w . x with a 1x1 conv, 2 input channels, one pixel:
    nll = (x_hat - t)^2   -> grad_w = 2 (x_hat - t) x
    g   = -a x_hat        -> grad_w = -a x
    """
    conv = nn.Conv2d(2, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([0.5, -1.0]).view(1, 2, 1, 1))
    x = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    t, a, disc_weight = 0.5, 3.0, 0.8
    x_hat = conv(x)  # 0.5 - 2 = -1.5
    nll = ((x_hat - t) ** 2).mean()  # grad (-4, -8), norm sqrt(80)
    g = -(a * x_hat).mean()  # grad (-3, -6), norm sqrt(45)
    d = adaptive_weight(nll, g, conv.weight, disc_weight)
    expected = disc_weight * math.sqrt(80) / (math.sqrt(45) + 1e-4)
    assert not d.requires_grad
    assert d.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.8 * 4 / 3, rel=1e-4)
    # The graph survives (retain_graph): the total loss back-propagates, to taming's
    # gradient (its own adaptive weight on the same graph) and to the one by hand.
    taming = SimpleNamespace(discriminator_weight=disc_weight)
    d_ref = taming_loss_mod.VQLPIPSWithDiscriminator.calculate_adaptive_weight(
        taming, nll, g, last_layer=conv.weight
    )
    (ref,) = torch.autograd.grad(nll + d_ref * g, conv.weight, retain_graph=True)
    (nll + d * g).backward(retain_graph=True)
    kappa = numerics.fp32_kappa(2 * numerics.summed_terms(conv), conv.weight.numel())
    assert numerics.gradient_error([conv.weight.grad], [ref], kappa) <= 1
    by_hand = torch.tensor([-4.0, -8.0]) + expected * torch.tensor([-3.0, -6.0])
    assert numerics.gradient_error([conv.weight.grad.flatten()], [by_hand], kappa) <= 1
    # the bound sees a weight off by 1 %
    (off,) = torch.autograd.grad(nll + 1.01 * d * g, conv.weight)
    assert numerics.gradient_error([off], [ref], kappa) > 1
    # No GAN gradient: ratio sqrt(80) / 1e-4 is clamped to 1e4 before disc_weight.
    x_hat = conv(x)
    nll = ((x_hat - t) ** 2).mean()
    g = 0.0 * x_hat.mean()
    d = adaptive_weight(nll, g, conv.weight, disc_weight)
    assert d.item() == pytest.approx(1e4 * disc_weight)


def test_adaptive_weight_scales_fp16_gradients():
    """fp16: per-pixel gradients of a mean loss underflow unless scaled, as the main
    backward is by the GradScaler; an overflowing scale gives weight 0, not NaN."""
    w = torch.ones(1, dtype=torch.float16, requires_grad=True)  # the "last layer"
    h = torch.ones(65536, dtype=torch.float16)

    def losses():
        x_hat = (w * h).float()
        return (x_hat * 2e-8).sum(), -(x_hat * 1e-8).sum()  # grads 2e-8, 1e-8 per pixel

    expected = 0.8 * (65536 * 2e-8) / (65536 * 1e-8 + 1e-4)
    assert adaptive_weight(*losses(), w, 0.8).item() == 0.0  # both gradients underflow
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    d = adaptive_weight(*losses(), w, 0.8, scaler.scale)
    assert d.item() == pytest.approx(expected, rel=1e-2)
    huge = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    assert adaptive_weight(*losses(), w, 0.8, huge.scale).item() == 0.0


# ---------------------------------------------------------------- disc_start


def test_no_adversarial_term_before_disc_start(loss_pair, monkeypatch):
    """Before disc_start the generator's gradients are taming's (whose adversarial term
    is there times 0), from L1 and the VQ loss alone; the discriminator never runs."""
    ref, _ = loss_pair
    monkeypatch.setattr(ref, "perceptual_weight", 0.0)  # as taming's perceptual_weight=0
    torch.manual_seed(0)
    loss_fn = VQGANLoss(disc_start=DISC_START, perceptual_weight=0.0).train()
    gen = nn.Conv2d(3, 3, 3, padding=1)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    vq = torch.tensor(0.25, requires_grad=True)
    x_hat = gen(x)
    step = DISC_START - 1
    loss, log = loss_fn.generator_loss(x, x_hat, vq, step, gen.weight)
    assert "g" not in log and "d_weight" not in log
    close(loss, (x - x_hat).abs().mean() + vq)
    params = [gen.weight, gen.bias, vq]

    def taming_grads(step: int) -> tuple[torch.Tensor, ...]:
        t_loss, _ = ref(vq, x, x_hat, 0, step, last_layer=gen.weight, split="train")
        return torch.autograd.grad(t_loss, params, retain_graph=True)

    expected, after = taming_grads(step), taming_grads(DISC_START)
    loss.backward()
    # the mean over every pixel, then the fan-in of the convolution's gradient
    n_params = sum(p.numel() for p in params)
    kappa = numerics.fp32_kappa(x.numel() + 2 * numerics.summed_terms(gen), n_params)
    got = [p.grad for p in params]
    assert numerics.gradient_error(got, expected, kappa) <= 1
    # the bound sees taming's adversarial term, which it adds from disc_start on
    assert numerics.gradient_error(got, after, kappa) > 1
    # No optimizer zeroes anything here: a discriminator that ran, even times 0, would
    # hold zero gradients, not None.
    assert all(p.grad is None for p in loss_fn.discriminator.parameters())


def test_discriminator_gets_no_gradient_before_disc_start():
    """taming multiplies the hinge loss by disc_factor = 0 before disc_start: the
    discriminator loss is 0 and the discriminator does not learn."""
    torch.manual_seed(0)
    loss_fn = VQGANLoss(disc_start=10, perceptual_weight=0.0).train()
    gen = nn.Conv2d(3, 3, 3, padding=1)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    x_hat = gen(x)
    loss, _ = loss_fn.generator_loss(x, x_hat, torch.tensor(0.0), 9, gen.weight)
    loss.backward()
    d, _ = loss_fn.discriminator_loss(x, x_hat, 9)
    assert d.item() == 0.0
    if d.requires_grad:
        d.backward()
    # None, not zeros: dcvq does not even run it (taming's 0 * hinge would give zeros).
    assert all(p.grad is None for p in loss_fn.discriminator.parameters())


def test_adversarial_terms_from_disc_start_on():
    torch.manual_seed(0)
    loss_fn = VQGANLoss(disc_start=10, perceptual_weight=0.0).train()
    gen = nn.Conv2d(3, 3, 3, padding=1)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    x_hat = gen(x)
    loss, log = loss_fn.generator_loss(x, x_hat, torch.tensor(0.0), 10, gen.weight)
    assert log["d_weight"].item() > 0
    close(loss, log["nll"] + log["d_weight"] * log["g"])
    loss.backward()
    loss_fn.discriminator.zero_grad(set_to_none=True)
    d, _ = loss_fn.discriminator_loss(x, x_hat, 10)
    assert d.item() > 0
    d.backward()
    grads = [p.grad for p in loss_fn.discriminator.parameters()]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
