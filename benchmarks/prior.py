"""The token prior (dcvq/prior/): training tokens/s, and sampling tokens/s.

One training step is `PriorTrainer.train_step` (teacher-forced forward over every token
of the batch, backward, gradient clipping, AdamW), the step the prior stage runs; its
throughput counts every token of the batch (`batch x h x w x K`). Sampling is
`TokenPrior.sample` with its key/value cache, one token per forward. Random token grids
stand in for a tokenizer's: the cost does not depend on the values.

CPU: `prior=tiny` (2 layers, 64 wide) on the demo tokenizer's grids (32x32 crops, f4:
8 x 8 positions x 2 codebooks of 128 codes). GPU (`--device cuda`): `prior=gpt_b`
(12 layers, 768 wide, 12 heads) on the paper's f16 grids at 256x256 (16 x 16 x 2, 1024
codes), batch 32 per GPU as in `conf/prior/gpt_b.yaml`, bf16 autocast, fused AdamW.
"""

from __future__ import annotations

from dataclasses import dataclass
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
)

BENCH = "prior"


@dataclass
class Setup:
    option: str  # conf/prior/<option>.yaml
    codes: int
    grid: int  # h = w
    batch: int
    sample_batch: int

    @property
    def config(self) -> str:
        return (f"prior={self.option}, {self.grid}x{self.grid}x2 tokens, {self.codes} codes, "
                f"batch {self.batch}")  # fmt: skip


def cpu_setup(ctx: Context) -> Setup:
    if ctx.size == "tiny":
        return Setup("tiny", codes=32, grid=4, batch=4, sample_batch=2)
    return Setup("tiny", codes=128, grid=8, batch=32, sample_batch=16)


def gpu_setup() -> Setup:
    return Setup("gpt_b", codes=1024, grid=16, batch=32, sample_batch=32)


def make_trainer(ctx: Context, setup: Setup):
    from dcvq.config import compose
    from dcvq.prior.config import build_prior
    from dcvq.prior.train import PriorTrainer
    from dcvq.runtime.distributed import DistEnv

    p = compose(["checkpoint=unused", f"prior={setup.option}", f"prior.batch_size={setup.batch}"],
                config_name="prior_train").prior  # fmt: skip
    sizes, grid = [setup.codes] * 2, [setup.grid] * 2
    torch.manual_seed(0)
    model = build_prior(p, sizes, grid, source="benchmark")
    tokens = {"checkpoint": "benchmark", "step": 0, "codebook_names": ["global", "local"],
              "codebook_sizes": sizes, "grid": grid}  # fmt: skip
    return PriorTrainer(model, p, ctx.workdir / "prior", ctx.device, DistEnv(), tokens)


def measure(ctx: Context, setup: Setup, repeats: int) -> list[dict[str, Any]]:
    trainer = make_trainer(ctx, setup)
    g = torch.Generator().manual_seed(0)
    grids = torch.randint(0, setup.codes, (setup.batch, 2, setup.grid, setup.grid), generator=g)
    sampler = torch.Generator(ctx.device).manual_seed(0)
    model = trainer.model
    tokens = setup.grid * setup.grid * 2

    def sample() -> None:
        model.eval()
        model.sample(setup.sample_batch, sampler)

    fns = {"train_step": lambda: trainer.train_step(grids), "sample": sample}
    ctx.log(f"  {BENCH} {setup.config}: {', '.join(fns)}")
    cmp = compare(fns, device=ctx.device, warmup=1, repeats=repeats)
    params = sum(p.numel() for p in model.parameters())
    # the GPU step runs under bf16 autocast (gpt_b); the CPU one has no peak to compare with
    peak = peak_flops(device_name(ctx.device), "bf16")
    extra, note = flop_fields(count_flops(fns["train_step"]), cmp.median("train_step"), peak)
    return [
        row(BENCH, "train_step", setup.config, cmp=cmp, items=setup.batch * tokens,
            unit="tokens", peak_mib=peak_memory(fns["train_step"], ctx.device),
            note=f"{params / 1e6:.2f}M parameters; {note}", **extra),
        row(BENCH, "sample", f"{setup.config.rsplit(',', 1)[0]}, {setup.sample_batch} images",
            cmp=cmp, items=setup.sample_batch * tokens, unit="tokens",
            note="key/value cache, one token per forward"),
    ]  # fmt: skip


def run(ctx: Context) -> dict[str, Any]:
    if ctx.device.type == "cuda":
        rows = measure(ctx, gpu_setup(), repeats=10)
    else:
        rows = measure(ctx, cpu_setup(ctx), repeats=ctx.pick(2, 3, 5))
        why = "no GPU available" if not torch.cuda.is_available() else "run with --device cuda"
        rows += [not_measured(BENCH, case, gpu_setup().config + ", bf16", why)
                 for case in ("train_step", "sample")]  # fmt: skip
    about = __doc__.split("\n\n")[1].replace("\n", " ")
    return {"about": about, "rows": rows, "targets": []}
