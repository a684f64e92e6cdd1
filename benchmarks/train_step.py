"""One training step with the full loss: dual ``t128_s128`` against ``vq`` on the same VQGAN.

Each case is a real :class:`dcvq.trainer.loop.Trainer` built from ``conf/`` and timed
through ``Trainer.train_step`` (autoencoder forward, LPIPS with stand-in VGG16 weights,
discriminator on from step 0 with its adaptive weight, both backward passes, both Adam
steps). All cases share the encoder, decoder and discriminator weights; only the
quantizer differs.

CPU: a reduced VQGAN (``model=tiny``: ch 32, f4, one attention level) at 64x64, fp32.
GPU (``--device cuda``): the paper's f16 at 256x256, batch 16, bf16 autocast,
channels_last, fused Adam, and the compiled variants chosen by ``--compile``
(``codebook``: ``torch.compile`` of the codebook transformer only; ``model``: of the
whole autoencoder). The codebook transformer is ~100 small kernels per step that do
not depend on the batch, which is what the compiled variants are for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from benchmarks.harness import (
    Context,
    compare,
    count_flops,
    device_name,
    flop_fields,
    not_measured,
    peak_flops,
    peak_memory,
    row,
    standin_vgg16,
    target,
)

BENCH = "train_step"


@dataclass
class Spec:
    """One timed case."""

    case: str
    quantizer: str
    precision: str = "fp32"
    channels_last: bool = False
    compile: str = "none"  # none | codebook | model
    #: the case its ratio is taken against (like for like); None: the comparison's baseline
    baseline: str | None = None


@dataclass
class Setup:
    """The model, data and loss every case of one comparison shares."""

    config: str
    batch: int
    side: int
    overrides: list[str] = field(default_factory=list)
    #: overrides for quantizers with a codebook transformer only
    transformer: list[str] = field(default_factory=list)


def cpu_setup(ctx: Context) -> Setup:
    if ctx.size == "tiny":
        return Setup(
            "tiny VQGAN 32x32 B=2 N=32, 1-layer transformer (smoke test)",
            batch=2,
            side=32,
            overrides=[
                "model=tiny",
                "model.resolution=32",
                "codebook.size=32",
                "loss.disc_ndf=8",
            ],
            transformer=["quantizer.transformer_layers=1", "quantizer.transformer_ff=64"],
        )
    batch = ctx.pick(2, 4, 8)
    return Setup(
        f"reduced VQGAN (ch 32, f4, attn at 16) 64x64 B={batch} N=512, fp32",
        batch=batch,
        side=64,
        overrides=["model=tiny", "model.attn_resolutions=[16]", "codebook.size=512"],
    )


def gpu_setup() -> Setup:
    return Setup(
        "paper f16 256x256 B=16 N=1024, bf16",
        batch=16,
        side=256,
        overrides=["model=vqgan_f16", "codebook.size=1024"],
    )


def cpu_specs() -> list[Spec]:
    return [Spec("dcvq_vq", "vq"), Spec("dcvq_t128_s128", "t128_s128")]


def gpu_specs(compile_option: str = "all") -> list[Spec]:
    fast = dict(precision="bf16", channels_last=True)
    specs = [Spec("dcvq_vq", "vq", **fast), Spec("dcvq_t128_s128", "t128_s128", **fast)]
    if compile_option in ("codebook", "all"):
        specs.append(
            Spec("dcvq_t128_s128+compile_codebook", "t128_s128", **fast, compile="codebook")
        )
    if compile_option in ("model", "all"):
        specs += [
            Spec("dcvq_vq+compile_model", "vq", **fast, compile="model"),
            Spec(
                "dcvq_t128_s128+compile_model",
                "t128_s128",
                **fast,
                compile="model",
                baseline="dcvq_vq+compile_model",
            ),
        ]
    return specs


def make_trainer(ctx: Context, spec: Spec, setup: Setup):
    from dcvq.config import compose
    from dcvq.trainer.loop import Trainer

    vgg = standin_vgg16(ctx.workdir)
    cfg = compose(
        [
            f"quantizer={spec.quantizer}",
            *setup.overrides,
            *(setup.transformer if spec.quantizer.startswith("t") else []),
            "loss.disc_start=0",
            f"loss.lpips_weights={vgg}",
            f"trainer.device={ctx.device}",
            f"trainer.precision={spec.precision}",
            f"trainer.compile={spec.compile}",
            f"trainer.channels_last={spec.channels_last}",
            f"trainer.batch_size={setup.batch}",
            "trainer.lr=1e-5",
            "trainer.progress=false",
        ]
    )
    return Trainer(cfg, ctx.workdir / "runs" / spec.case)


def share_weights(src, dst) -> None:
    """Copy everything but the quantizer (encoder, decoder, 1x1 convs, discriminator)."""
    state = {k: v for k, v in src.model.state_dict().items() if not k.startswith("quantizer.")}
    missing, unexpected = dst.model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("quantizer.") for k in missing)
    dst.loss.discriminator.load_state_dict(src.loss.discriminator.state_dict())


def images(setup: Setup, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(setup.batch, 3, setup.side, setup.side, generator=g) * 2 - 1
    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def measure(
    ctx: Context, setup: Setup, specs: list[Spec], baseline: str, *, repeats: int, warmup: int
) -> list[dict[str, Any]]:
    """Times ``Trainer.train_step`` for every spec, alternated; one row per spec."""
    fns, trainers = {}, {}
    ref = None
    for spec in specs:
        torch.manual_seed(0)
        trainer = make_trainer(ctx, spec, setup)
        if ref is None:
            ref = trainer
        else:
            share_weights(ref, trainer)
        x = images(setup, ctx.device, spec.channels_last)
        trainers[spec.case] = trainer
        fns[spec.case] = lambda t=trainer, x=x: t.train_step([x])
    ctx.log(f"  {BENCH} {setup.config}: {', '.join(fns)}")
    cmp = compare(fns, device=ctx.device, warmup=warmup, repeats=repeats)
    name = device_name(ctx.device)
    flops_by_quantizer: dict[str, int] = {}
    rows = []
    for spec in specs:
        peak = peak_memory(fns[spec.case], ctx.device)
        if spec.quantizer not in flops_by_quantizer and spec.compile == "none":
            flops_by_quantizer[spec.quantizer] = count_flops(fns[spec.case])
        flops = flops_by_quantizer.get(spec.quantizer)
        extra: dict[str, Any] = {"gflop_per_step": None, "mfu": None}
        note = ""
        if flops is not None:
            rate = peak_flops(name, spec.precision)
            extra, note = flop_fields(flops, cmp.median(spec.case), rate)
        rows.append(
            row(
                BENCH,
                spec.case,
                setup.config,
                cmp=cmp,
                baseline=spec.baseline or baseline,
                items=setup.batch,
                unit="images",
                peak_mib=peak,
                note=note,
                **extra,
            )
        )
    return rows


def run(ctx: Context) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    gpu_ratio = None
    if ctx.device.type == "cuda":
        setup = gpu_setup()
        specs = gpu_specs(ctx.options.get("compile", "all"))
        rows += measure(ctx, setup, specs, "dcvq_vq", repeats=10, warmup=3)
        gpu_ratio = min(r["ratio"] for r in rows if "t128" in r["case"])
    else:
        setup = cpu_setup(ctx)
        rows += measure(
            ctx,
            setup,
            cpu_specs(),
            "dcvq_vq",
            repeats=ctx.pick(2, 3, 5),
            warmup=1,
        )
        why = "no GPU available" if not torch.cuda.is_available() else "run with --device cuda"
        for spec in gpu_specs():
            rows.append(not_measured(BENCH, spec.case, gpu_setup().config, why))
    about = (
        "`Trainer.train_step` with the full loss (LPIPS with stand-in VGG16 weights, "
        "discriminator on): dual `t128_s128` against `vq`, same encoder/decoder/discriminator "
        "weights."
    )
    targets = [
        target(
            "GPU f16 256x256: best t128_s128 step / vq step",
            gpu_ratio,
            1.02,
            note="" if gpu_ratio is not None else "GPU only",
        ),
    ]
    return {"about": about, "rows": rows, "targets": targets}
