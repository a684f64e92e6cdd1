"""dcvq's training step against taming-transformers' own, at the same batch.

taming's side is its ``VQModel`` training step without Lightning: its ``Encoder``,
``Decoder``, ``VectorQuantizer2`` (``legacy=True``, as its ``VQModel`` builds it) and
``VQLPIPSWithDiscriminator`` in fp32, run as Lightning's automatic optimisation runs
its two optimisers: (0) autoencoder forward, generator loss, backward, Adam step, with
the discriminator's parameters frozen; (1) autoencoder forward again (autoencoder
frozen), discriminator loss, backward, Adam step. LPIPS in train mode (its heads'
dropout on), as ``model.train()`` leaves it.

dcvq's side is ``Trainer.train_step`` on the same architecture with taming's weights
copied in (``quantizer.legacy_beta=true``, ``loss.perceptual_weight=1.0``: taming's
values). Before timing, both compute their losses at the same weights on the same
batch (taming's LPIPS in eval mode there, so that dropout does not differ) and the
values are compared: generator total, nll, quantizer loss, g, adaptive weight and
discriminator loss.

CPU: a reduced VQGAN, fp32 on both sides. GPU (``--device cuda``): the paper's f16
at 256x256, batch 16; taming as its users run it (fp32), dcvq with its fast path (bf16
autocast, channels_last, fused Adam, ``torch.compile`` of the autoencoder); every case's
MFU from FlopCounterMode's count of dcvq's step, against the card's peak at the case's
precision (``harness.PEAK_FLOPS``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks.harness import (
    Context,
    compare,
    count_flops,
    device_name,
    flop_fields,
    not_measured,
    paper_f16,
    peak_flops,
    peak_memory,
    row,
    standin_vgg16,
    target,
)
from benchmarks.train_step import Setup, Spec, images

BENCH = "taming_step"
TAMING_LPIPS = "taming/modules/autoencoder/lpips/vgg.pth"
LOSS_KEYS = ("total", "nll", "vq", "g", "d_weight", "d")
RTOL, ATOL = 1e-4, 1e-5


def arch(ctx: Context) -> dict[str, Any]:
    """Encoder/decoder settings (taming's ``ddconfig`` keys) and codebook size."""
    if ctx.device.type == "cuda":
        return dict(paper_f16(), n_codes=1024, batch=16)
    return dict(
        ch=32,
        ch_mult=(1, 2, 2),
        num_res_blocks=1,
        attn_resolutions=() if ctx.size == "tiny" else (16,),
        resolution=ctx.pick(32, 64, 64),
        z_channels=64,
        n_codes=ctx.pick(32, 512, 512),
        batch=ctx.pick(2, 4, 8),
    )


# ---------------------------------------------------------------- taming side


class TamingVQModel(nn.Module):
    """taming.models.vqgan.VQModel's modules and forward, without Lightning."""

    def __init__(self, a: dict[str, Any], embed_dim: int = 256) -> None:
        super().__init__()
        from taming.modules.diffusionmodules.model import Decoder, Encoder
        from taming.modules.vqvae.quantize import VectorQuantizer2

        dd = dict(
            ch=a["ch"],
            ch_mult=a["ch_mult"],
            num_res_blocks=a["num_res_blocks"],
            attn_resolutions=a["attn_resolutions"],
            resolution=a["resolution"],
            z_channels=a["z_channels"],
            in_channels=3,
            out_ch=3,
            dropout=0.0,
            double_z=False,
        )
        self.encoder = Encoder(**dd)
        self.decoder = Decoder(**dd)
        self.quantize = VectorQuantizer2(a["n_codes"], embed_dim, beta=0.25)  # legacy=True
        self.quant_conv = nn.Conv2d(a["z_channels"], embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, a["z_channels"], 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        quant, diff, _ = self.quantize(self.quant_conv(self.encoder(x)))
        return self.decoder(self.post_quant_conv(quant)), diff

    def get_last_layer(self) -> Tensor:
        return self.decoder.conv_out.weight


@contextlib.contextmanager
def taming_files(ctx: Context):
    """taming's LPIPS loads torchvision's VGG16 from $TORCH_HOME (strict, classifier
    included) and its linear heads from a cwd-relative path: both from local stand-ins
    (the heads are the ``lpips`` package's ``vgg.pth``, byte-identical to taming's)."""
    import lpips

    full = standin_vgg16(ctx.workdir, with_classifier=True)
    hub = Path(torch.hub.get_dir()) / "checkpoints" / full.name
    hub.parent.mkdir(parents=True, exist_ok=True)
    if not hub.exists():
        shutil.copyfile(full, hub)
    cwd = ctx.workdir / "taming_cwd"
    heads = cwd / TAMING_LPIPS
    if not heads.exists():
        heads.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth", heads)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(old)


class TamingStep:
    """One taming training step (both optimisers), as Lightning runs it."""

    def __init__(self, ctx: Context, a: dict[str, Any], lr: float = 1e-5) -> None:
        from taming.modules.losses.vqperceptual import VQLPIPSWithDiscriminator

        self.model = TamingVQModel(a).to(ctx.device)
        with taming_files(ctx):
            loss = VQLPIPSWithDiscriminator(
                disc_start=0,
                codebook_weight=1.0,
                pixelloss_weight=1.0,
                disc_num_layers=3,
                disc_in_channels=3,
                disc_factor=1.0,
                disc_weight=0.8,
                perceptual_weight=1.0,
                disc_ndf=ctx.pick(8, 64, 64),
                disc_loss="hinge",
            )
        self.loss = loss.to(ctx.device)
        ae = [*self.model.parameters()]
        self.opt_ae = torch.optim.Adam(ae, lr=lr, betas=(0.5, 0.9))
        self.opt_disc = torch.optim.Adam(
            self.loss.discriminator.parameters(), lr=lr, betas=(0.5, 0.9)
        )
        self.global_step = 0

    def _toggle(self, train_disc: bool) -> None:
        # Lightning's toggle_optimizer: only the current optimiser's parameters need grad.
        for p in self.model.parameters():
            p.requires_grad_(not train_disc)
        for p in self.loss.discriminator.parameters():
            p.requires_grad_(train_disc)

    def __call__(self, x: Tensor) -> None:
        self.model.train()
        self.loss.train()
        last = self.model.get_last_layer()
        self._toggle(train_disc=False)
        xrec, qloss = self.model(x)
        aeloss, _ = self.loss(qloss, x, xrec, 0, self.global_step, last_layer=last, split="train")
        self.opt_ae.zero_grad()
        aeloss.backward()
        self.opt_ae.step()
        self._toggle(train_disc=True)
        xrec, qloss = self.model(x)
        discloss, _ = self.loss(qloss, x, xrec, 1, self.global_step, last_layer=last, split="train")
        self.opt_disc.zero_grad()
        discloss.backward()
        self.opt_disc.step()
        for p in self.model.parameters():
            p.requires_grad_(True)
        self.global_step += 1


# ---------------------------------------------------------------- dcvq side


def dcvq_trainer(ctx: Context, a: dict[str, Any], spec: Spec):
    from benchmarks.train_step import make_trainer

    setup = Setup(
        "",
        batch=a["batch"],
        side=a["resolution"],
        overrides=[
            "quantizer=vq",
            f"codebook.size={a['n_codes']}",
            "quantizer.legacy_beta=true",
            f"model.ch={a['ch']}",
            f"model.ch_mult={list(a['ch_mult'])}",
            f"model.num_res_blocks={a['num_res_blocks']}",
            f"model.attn_resolutions={list(a['attn_resolutions'])}",
            f"model.resolution={a['resolution']}",
            f"model.z_channels={a['z_channels']}",
            "loss.perceptual_weight=1.0",
            f"loss.disc_ndf={ctx.pick(8, 64, 64)}",
        ],
    )
    return make_trainer(ctx, spec, setup), setup


def copy_taming_weights(taming: TamingStep, trainer) -> None:
    state = taming.model.state_dict()
    mapped = {
        ("quantizer.codebook." + k[len("quantize.") :] if k.startswith("quantize.") else k): v
        for k, v in state.items()
    }
    trainer.model.load_state_dict(mapped, strict=True)
    trainer.loss.discriminator.load_state_dict(taming.loss.discriminator.state_dict(), strict=True)


def loss_values(taming: TamingStep, trainer, x: Tensor) -> tuple[dict, dict]:
    """Both sides' losses at their current (equal) weights, without any update."""
    tm, tl = taming.model, taming.loss
    tm.train()
    tl.train()
    tl.perceptual_loss.eval()  # its LPIPS heads' dropout off: deterministic values
    xrec, qloss = tm(x)
    last = tm.get_last_layer()
    _, glog = tl(qloss, x, xrec, 0, 0, last_layer=last, split="train")
    _, dlog = tl(qloss, x, xrec, 1, 0, last_layer=last, split="train")
    ref = {
        "total": glog["train/total_loss"],
        "nll": glog["train/nll_loss"],
        "vq": glog["train/quant_loss"],
        "g": glog["train/g_loss"],
        "d_weight": glog["train/d_weight"],
        "d": dlog["train/disc_loss"],
    }
    model, loss = trainer.model, trainer.loss
    model.train()
    loss.train()
    x_hat, vq_loss, _ = model(x)
    _, logs = loss.generator_loss(x, x_hat, vq_loss, 0, model.decoder.last_layer)
    _, dlogs = loss.discriminator_loss(x, x_hat, 0)
    ours = {k: logs[k] for k in ("total", "nll", "vq", "g", "d_weight")} | {"d": dlogs["d"]}
    to_float = lambda d: {k: float(v) for k, v in d.items()}  # noqa: E731
    return to_float(ref), to_float(ours)


def losses_match(ref: dict[str, float], ours: dict[str, float]) -> tuple[bool, float]:
    worst = max(abs(ref[k] - ours[k]) / (ATOL + RTOL * abs(ref[k])) for k in LOSS_KEYS)
    return worst <= 1.0, worst


# ---------------------------------------------------------------- entry

NOTES = {
    "taming_fp32": "autoencoder forward twice (Lightning's two optimiser passes)",
    "dcvq_bf16": "bf16 autocast, fused Adam",
    "dcvq_bf16_cl": "bf16 autocast, channels_last, fused Adam",
    "dcvq_fast": "bf16 autocast, channels_last, fused Adam, compiled autoencoder",
}


def gpu_specs() -> list[Spec]:
    """dcvq's fast path, one option at a time (what each buys)."""
    return [
        Spec("dcvq_bf16", "vq", precision="bf16"),
        Spec("dcvq_bf16_cl", "vq", precision="bf16", channels_last=True),
        Spec("dcvq_fast", "vq", precision="bf16", channels_last=True, compile="model"),
    ]


def run(ctx: Context) -> dict[str, Any]:
    try:
        import taming.modules.losses.vqperceptual  # noqa: F401
    except ImportError:
        row_ = not_measured(BENCH, "taming", "", "taming-transformers not installed")
        return {"rows": [row_], "targets": []}
    a = arch(ctx)
    gpu = ctx.device.type == "cuda"
    fp32 = Spec("dcvq_fp32", "vq")
    specs = [fp32, *gpu_specs()] if gpu else [fp32]

    torch.manual_seed(0)
    taming = TamingStep(ctx, a)
    trainers = {}
    for spec in specs:
        trainer, setup = dcvq_trainer(ctx, a, spec)
        copy_taming_weights(taming, trainer)
        trainers[spec.case] = trainer
    x = images(setup, ctx.device)

    # Equal loss values at equal weights (before any update).
    ref, ours = loss_values(taming, trainers["dcvq_fp32"], x)
    match, worst = losses_match(ref, ours)
    ctx.log(
        f"  {BENCH} losses taming {ref}\n  {BENCH} losses dcvq   {ours}\n"
        f"  {BENCH} equal: {match} (worst |diff| / (atol + rtol |ref|) = {worst:.3g})"
    )

    fns = {"taming_fp32": lambda: taming(x)}
    for spec in specs:
        xs = images(setup, ctx.device, spec.channels_last)
        fns[spec.case] = lambda t=trainers[spec.case], xs=xs: t.train_step([xs])
    config = (
        f"ch {a['ch']}, mult {list(a['ch_mult'])}, {a['resolution']}x{a['resolution']} "
        f"B={a['batch']} N={a['n_codes']}"
    )
    ctx.log(f"  {BENCH} {config}: {', '.join(fns)}")
    repeats = 10 if gpu else ctx.pick(2, 3, 5)
    cmp = compare(fns, device=ctx.device, warmup=3 if gpu else 1, repeats=repeats)
    # The model's FLOPs, counted once on dcvq's step: taming's second autoencoder forward
    # is overhead, not model work, so every case is measured against the same count.
    flops = count_flops(fns["dcvq_fp32"])
    name = device_name(ctx.device)
    precision = {"taming_fp32": "fp32"} | {spec.case: spec.precision for spec in specs}
    rows = []
    for case in fns:
        note = NOTES.get(case, "")
        if case == "dcvq_fp32":
            note = f"losses equal to taming's: {match}"
        extra, flop_note = flop_fields(flops, cmp.median(case), peak_flops(name, precision[case]))
        note += f"; {flop_note}"
        rows.append(
            row(
                BENCH,
                case,
                config,
                cmp=cmp,
                baseline="taming_fp32",
                items=a["batch"],
                unit="images",
                peak_mib=peak_memory(fns[case], ctx.device),
                note=note,
                **extra,
            )
        )
    if not gpu:
        why = "no GPU available" if not torch.cuda.is_available() else "run with --device cuda"
        cfg = "paper f16 256x256 B=16 N=1024"
        for case in ("taming_fp32", "dcvq_fp32", *(spec.case for spec in gpu_specs())):
            rows.append(not_measured(BENCH, case, cfg, why))
    fast_ratio = cmp.ratio("dcvq_fast", "taming_fp32") if gpu else None
    targets = [
        target(
            "losses equal at equal weights: worst |diff| / (1e-5 + 1e-4 |taming|)",
            worst,
            1.0,
            note="; ".join(f"{k} {ref[k]:.6g} vs {ours[k]:.6g}" for k in LOSS_KEYS),
        ),
        target(
            "GPU: dcvq fast-path step time / taming step time (3x the images/s: <= 1/3)",
            fast_ratio,
            1 / 3,
            note="" if gpu else "GPU only",
        ),
    ]
    about = (
        "taming's own training step (two autoencoder forwards, fp32) against dcvq's "
        "`Trainer.train_step` on the same architecture and weights."
    )
    return {
        "about": about,
        "rows": rows,
        "targets": targets,
        "losses": {"taming": ref, "dcvq": ours, "equal": match},
    }
