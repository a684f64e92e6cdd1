"""`dcvq.metrics.evaluator.Evaluator` (rows `evaluate`): images/s and peak memory as the
split grows.

Synthetic images (made on the fly from their index: the dataset itself holds nothing)
go through the evaluator (protocol `clean`: PSNR, L1, L2, SSIM and codebook usage;
FID and LPIPS off on CPU: their networks would be the whole cost). The model is a dual
`t128_s128` VQGAN small enough for a CPU: ch 32, f2, 16x16 images, 512 codes per
codebook. The baseline is the bare loop that the evaluator wraps (`model(x)` in eval
mode without autograd, same loader), alternated with it on the smallest split: the
ratio is what the metrics cost. Then each split is timed once and run once more for its
peak memory, which should not grow with the number of images. Every row also gives the
model's FLOP/s (FlopCounterMode's count of `model(x)` per image) and, on a card in
`harness.PEAK_FLOPS`, its MFU. On GPU (`--device cuda`) the model is the paper's f16 at
256x256 with 1024 codes, fed by 4 loader workers.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks.harness import (
    Context,
    compare,
    count_flops,
    device_name,
    flop_fields,
    not_measured,
    paper_f16,
    peak_flops,
    row,
    sync,
    target,
    track_peak,
)

BENCH = "evaluation"


class SyntheticImages(Dataset):
    """`n` images in `[-1, 1]`, each drawn from a generator seeded by its index."""

    def __init__(self, n: int, side: int) -> None:
        self.n, self.side = n, side

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(i)
        coarse = torch.rand(1, 3, 4, 4, generator=g)
        smooth = torch.nn.functional.interpolate(
            coarse, size=(self.side, self.side), mode="bilinear", align_corners=False
        )[0]
        noise = torch.rand(3, self.side, self.side, generator=g)
        return (0.8 * smooth + 0.2 * noise) * 2 - 1


def build_model(ctx: Context) -> torch.nn.Module:
    from dcvq.model import VQModel
    from dcvq.quantizers import DualCodebookQuantizer

    torch.manual_seed(0)
    if ctx.device.type == "cuda":
        quantizer = DualCodebookQuantizer(1024)
        arch = paper_f16()
    else:
        layers = 1 if ctx.size == "tiny" else 6
        quantizer = DualCodebookQuantizer(ctx.pick(32, 512, 512), transformer_layers=layers)
        arch = dict(
            ch=32,
            ch_mult=(1, 2),
            num_res_blocks=1,
            attn_resolutions=(),
            resolution=16,
            z_channels=32,
        )
    return VQModel(quantizer, **arch).to(ctx.device)


def loader(n: int, side: int, batch: int, workers: int = 0) -> DataLoader:
    return DataLoader(
        SyntheticImages(n, side), batch_size=batch, shuffle=False, num_workers=workers,
        pin_memory=workers > 0,
    )  # fmt: skip


def run(ctx: Context) -> dict[str, Any]:
    from dcvq.metrics.evaluator import Evaluator

    gpu = ctx.device.type == "cuda"
    model = build_model(ctx)
    side = 256 if gpu else 16
    batch = ctx.pick(8, 100, 100) if not gpu else 64
    workers = 4 if gpu else 0  # on GPU, making 256x256 images in the main process would be the cost
    sizes = ctx.pick([16, 32, 64], [250, 1000, 4000], [1000, 5000, 20000])
    config = (
        f"dual t128_s128 N={model.quantizer.codebook_sizes[0]}, {side}x{side}, "
        f"batch {batch}, protocol clean, fid/lpips off"
    )
    evaluator = Evaluator(device=ctx.device, protocol="clean")

    def run_eval(n: int) -> dict[str, Any]:
        return evaluator(model, loader(n, side, batch, workers))

    def bare(n: int) -> None:
        model.eval()
        with torch.no_grad():
            for x in loader(n, side, batch, workers):
                model(x.to(ctx.device))

    # Warm-up: first calls load kernels and fill the eval-mode codebook cache.
    run_eval(2 * batch)
    bare(2 * batch)
    # The model's FLOPs per image, counted once on one batch with the codebook cached, as
    # for all but a split's first batch (the metrics' element-wise work is not counted),
    # against the card's fp32 peak: evaluation runs without autocast.
    x = next(iter(loader(batch, side, batch))).to(ctx.device)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    per_image = count_flops(forward) / batch
    rate = peak_flops(device_name(ctx.device), "fp32")

    def flops(seconds: float, n: int) -> tuple[dict[str, Any], str]:
        return flop_fields(per_image, seconds / n, rate, per="image")

    small = sizes[0]
    ctx.log(f"  {BENCH} {config}: evaluate vs bare loop at {small} images")
    cmp = compare(
        {"evaluate": lambda: run_eval(small), "bare_model_loop": lambda: bare(small)},
        device=ctx.device,
        warmup=1,
        repeats=ctx.pick(2, 3, 3),
    )
    rows = []
    for case, baseline, note in (
        ("evaluate", "bare_model_loop", ""),
        ("bare_model_loop", None, "model(x) only: the floor evaluate cannot beat; "),
    ):
        extra, flop_note = flops(cmp.median(case), small)
        rows.append(
            row(
                BENCH,
                case,
                f"{small} images, alternated; {config}",
                cmp=cmp,
                baseline=baseline,
                items=small,
                unit="images",
                note=note + flop_note,
                **extra,
            )
        )
    peaks: dict[int, float | None] = {}

    def timed(n: int) -> float:
        sync(ctx.device)
        t0 = time.perf_counter()
        assert run_eval(n)["n_images"] == n
        sync(ctx.device)
        return time.perf_counter() - t0

    for n in sizes:
        ctx.log(f"  {BENCH} evaluate {n} images")
        if gpu:  # the CUDA peak counter costs nothing: one run gives both
            with track_peak(ctx.device) as mem:
                seconds = timed(n)
        else:
            # Timed on its own, then run again for memory: the CPU memory run maps every
            # buffer over 128 KiB afresh (see harness), which would slow the timing down.
            seconds = timed(n)
            with track_peak(ctx.device) as mem:
                run_eval(n)
        peaks[n] = mem["peak_mib"]
        extra, flop_note = flops(seconds, n)
        rows.append(
            row(
                BENCH,
                "evaluate",
                f"{n} images; {config}",
                median_s=seconds,
                items=n,
                unit="images",
                peak_mib=peaks[n],
                note=("one run" if gpu else "one timed run, one memory run") + "; " + flop_note,
                **extra,
            )
        )
    if not gpu:
        why = "no GPU available" if not torch.cuda.is_available() else "run with --device cuda"
        rows.append(not_measured(BENCH, "evaluate", "paper f16 256x256, 1k/5k/20k images", why))
    first, last = peaks[sizes[0]], peaks[sizes[-1]]
    growth = None if first is None or last is None else last - first
    targets = [
        target(
            f"evaluate peak MiB growth from {sizes[0]} to {sizes[-1]} images",
            growth,
            8.0,
            note="peaks: " + ", ".join(f"{n}: {_f(p)}" for n, p in peaks.items()),
        ),
    ]
    about = __doc__.split("\n\n")[1].replace("\n", " ")
    return {"about": about, "rows": rows, "targets": targets}


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"
