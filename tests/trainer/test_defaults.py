"""The defaults users run, each exercised once at tiny size: data-loader workers, the f8
model, the LPIPS term, the vanilla GAN loss, the shorter evaluations during training,
progress bars, and training on CUDA (explicitly, where there is one)."""

from __future__ import annotations

import json
import math

import numerics
import pytest
import torch

from dcvq.build import build_model
from dcvq.checkpoint import read_checkpoint
from dcvq.config import compose
from dcvq.trainer import Trainer

SHORT = ["trainer.max_steps=3", "trainer.eval_every=2", "trainer.ckpt_every=100"]


def test_loader_workers_train_exactly_like_the_main_process(tiny_cfg, tmp_path):
    """Workers (persistent, as by default) load the same batches and crops, and the
    evaluation's workers the same images: same weights, same metrics, bit for bit."""
    runs = {}
    for workers in (0, 2):
        trainer = Trainer(
            tiny_cfg(*SHORT, f"trainer.num_workers={workers}"), tmp_path / str(workers)
        )
        runs[workers] = (trainer.fit(), trainer.model.state_dict())
    (res0, w0), (res2, w2) = runs[0], runs[2]
    assert all(torch.equal(w0[k], w2[k]) for k in w0)
    assert res0["n_images"] == res2["n_images"] > 0
    assert res0["psnr"] == res2["psnr"] and res0["l1"] == res2["l1"]


def test_vqgan_f8_builds_with_the_taming_parameter_count():
    from taming.modules.diffusionmodules.model import Decoder, Encoder

    cfg = compose(["model=vqgan_f8", "trainer.device=cpu"])
    model = build_model(cfg)
    m = cfg.model
    ddconfig = dict(
        ch=m.ch, out_ch=3, ch_mult=list(m.ch_mult), num_res_blocks=m.num_res_blocks,
        attn_resolutions=list(m.attn_resolutions), dropout=m.dropout, in_channels=3,
        resolution=m.resolution, z_channels=m.z_channels, double_z=False,
    )  # fmt: skip
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert count(model.encoder) == count(Encoder(**ddconfig))
    assert count(model.decoder) == count(Decoder(**ddconfig))
    assert 2 ** (len(m.ch_mult) - 1) == 8
    model.eval()
    with torch.no_grad():
        _, indices = model.encode(torch.zeros(1, 3, 32, 32))
    assert indices.shape[-2:] == (4, 4)  # f8


def test_lpips_term_is_in_the_trained_loss(tiny_cfg, tmp_path, lpips_weights):
    """With perceptual_weight > 0 (the default 1.25), nll = L1 + weight * LPIPS."""
    trainer = Trainer(tiny_cfg(*SHORT, "loss.perceptual_weight=1.25"), tmp_path)
    assert trainer.loss.perceptual is not None
    trainer.fit()
    lines = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert all(x["nll"] > x["l1"] + 1e-4 for x in lines)


@pytest.mark.parametrize(("disc_loss", "at_init"), [("hinge", 1.0), ("vanilla", math.log(2))])
def test_gan_losses_train_the_discriminator(tiny_cfg, tmp_path, disc_loss, at_init):
    """Logits start near 0: hinge gives 0.5 * (1 + 1) = 1, vanilla 0.5 * 2 log 2 = log 2;
    the discriminator's weights move."""
    trainer = Trainer(
        tiny_cfg(*SHORT, "loss.disc_start=0", f"loss.disc_loss={disc_loss}"), tmp_path
    )
    before = {k: v.clone() for k, v in trainer.loss.discriminator.named_parameters()}
    trainer.fit()
    first = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    assert first["d"] == pytest.approx(at_init, abs=0.15)
    after = dict(trainer.loss.discriminator.named_parameters())
    assert all(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))


def test_evaluations_during_training_use_their_own_image_cap(tiny_cfg, tmp_path):
    cfg = tiny_cfg(*SHORT, "eval.max_images=8", "eval.max_images_during_training=4")
    trainer = Trainer(cfg, tmp_path)
    _, val = trainer.loaders()
    assert trainer.evaluate_split(val, "val", final=False)["n_images"] == 4
    assert trainer.evaluate_split(val, "val", final=True)["n_images"] == 8


def test_progress_bar_shows_the_training_losses(tiny_cfg, tmp_path, capsys):
    Trainer(tiny_cfg(*SHORT, "trainer.progress=true"), tmp_path).fit()
    err = capsys.readouterr().err
    assert "train:" in err and "3/3" in err and "psnr=" in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiny_training_on_cuda_with_bf16(tiny_cfg, tmp_path, fixed_batch_losses):
    """The one CUDA job of the suite: trainer.device=auto picks the GPU, precision=auto
    bf16 autocast, fp32 master weights. From the same weights and batch its loss is the
    CPU's fp32 loss to bf16's rounding (which TF32 convolutions stay within), and it
    falls over a few steps on a fixed batch."""
    trainer = Trainer(tiny_cfg(*SHORT, "trainer.device=auto"), tmp_path)
    assert trainer.device.type == "cuda" and trainer.dtype == torch.bfloat16
    results = trainer.fit()
    assert results["n_images"] == 8 and results["step"] == 3
    assert read_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 3
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())

    _, cpu = fixed_batch_losses()  # the tiny preset: CPU, fp32
    cuda_trainer, cuda = fixed_batch_losses("trainer.device=auto")
    assert cuda_trainer.device.type == "cuda"
    kappa = numerics.amp_kappa(torch.bfloat16, len(numerics.layers(cuda_trainer.model)), 1)
    assert numerics.relative_error(cuda[:1], cpu[:1]) <= kappa
    assert cuda[-1] < 0.75 * cuda[0]
