"""Quantizers alone: dcvq's ``vq``, ``s128_s128``, ``t128_s128`` against taming's
``VectorQuantizer2`` and lucidrains' ``VectorQuantize``, on an encoder latent
``B x 256 x 16 x 16`` (the paper's f16 at 256x256).

- ``train``: one forward + backward in train mode (``loss = z_q.sum() + vq_loss``),
  gradients cleared each call.
- ``eval``: one forward in eval mode without autograd (what encoding a dataset costs);
  ``t128_s128`` uses its cached transformer codebook.
- ``distance``: the nearest-code search alone, dcvq's chunked ``nearest_code`` against
  the unchunked formula taming uses, and the same search with its product through
  ``addmm`` (MKL) instead of oneDNN, with peak memory; and the dual quantizer's search
  (two 128-d halves, each against its own codebook, in one batched call), which bounds
  how close eval-mode ``t128_s128`` can come to ``vq``.

Settings of the anchors: taming ``VectorQuantizer2(legacy=False)`` (the same maths as
dcvq's ``vq``); lucidrains ``VectorQuantize`` with ``learnable_codebook=True``,
``ema_update=False``, ``rotation_trick=False``, ``kmeans_init=False``: a learnable
codebook with a straight-through estimator, as in the paper, but its loss is one
``commitment_weight * |q - z|^2`` term with gradients into both sides (no separate beta).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks.harness import Context, compare, not_measured, peak_memory, row, target
from dcvq.quantizers import DualCodebookQuantizer, VectorQuantizer
from dcvq.quantizers import search as qsearch

BENCH = "quantizer"
DIM = 256
CANDIDATES = ("dcvq_vq", "dcvq_s128_s128", "dcvq_t128_s128", "taming_vq2", "lucidrains_vq")
BASELINE = "taming_vq2"


def build(name: str, n_codes: int) -> nn.Module | None:
    """A quantizer by benchmark name; ``None`` when its package is not installed."""
    if name == "dcvq_vq":
        return VectorQuantizer(n_codes, DIM, beta=0.25)
    if name == "dcvq_s128_s128":
        return DualCodebookQuantizer(n_codes, 128, 128, global_transformer=False)
    if name == "dcvq_t128_s128":
        return DualCodebookQuantizer(n_codes, 128, 128, global_transformer=True)
    if name == "taming_vq2":
        try:
            from taming.modules.vqvae.quantize import VectorQuantizer2
        except ImportError:
            return None
        return VectorQuantizer2(n_codes, DIM, beta=0.25, legacy=False)
    if name == "lucidrains_vq":
        try:
            from vector_quantize_pytorch import VectorQuantize
        except ImportError:
            return None
        return VectorQuantize(
            dim=DIM,
            codebook_size=n_codes,
            accept_image_fmap=True,
            learnable_codebook=True,
            ema_update=False,
            rotation_trick=False,
            kmeans_init=False,
            commitment_weight=1.0,
        )
    raise KeyError(name)


def forward(name: str, module: nn.Module, z: Tensor) -> tuple[Tensor, Tensor]:
    """``(z_q, vq_loss)`` whatever the implementation's return convention."""
    if name.startswith("dcvq"):
        out = module(z)
        return out.z_q, out.loss
    if name == "taming_vq2":
        z_q, loss, _ = module(z)
        return z_q, loss
    z_q, _, loss = module(z)
    return z_q, loss


def train_call(name: str, module: nn.Module, z: Tensor) -> Callable[[], None]:
    module.train()

    def step() -> None:
        z_q, loss = forward(name, module, z)
        (z_q.sum() + loss).backward()
        z.grad = None
        module.zero_grad(set_to_none=True)

    return step


def eval_call(name: str, module: nn.Module, z: Tensor) -> Callable[[], None]:
    module.eval()

    def encode() -> None:
        with torch.no_grad():
            forward(name, module, z)

    return encode


def _latent(batch: int, side: int, device: torch.device, grad: bool) -> Tensor:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(batch, DIM, side, side, generator=g).to(device)
    return z.requires_grad_(grad)


def _skip_reason(name: str, n_codes: int, ctx: Context, mode: str) -> str | None:
    if name == "dcvq_t128_s128" and ctx.device.type == "cpu" and n_codes > 4096:
        # 6 layers of attention over N tokens, ~4 N^2 d flops a layer: 16384 codes ->
        # about 1 TFLOP per codebook generation (x3 with its backward): GPU only.
        cost = "~3 TFLOP a step with backward" if mode == "train" else "~1 TFLOP to fill the cache"
        return f"CPU: a 6-layer transformer over {n_codes} codes is {cost}; GPU only"
    return None


def _mode_rows(
    ctx: Context, mode: str, batch: int, side: int, n_codes: int, repeats: int, min_time: float
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Every candidate at one shape. In train mode ``t128_s128`` (its transformer costs
    ~100x the rest) is timed in a second comparison with fewer rounds, alternated with
    the two references again, so that the fast cases get many rounds cheaply."""
    config = f"{mode} B={batch} {DIM}x{side}x{side} N={n_codes}"
    fns: dict[str, Callable[[], None]] = {}
    skipped: dict[str, str] = {}
    torch.manual_seed(0)
    for name in CANDIDATES:
        why = _skip_reason(name, n_codes, ctx, mode)
        module = None if why else build(name, n_codes)
        if module is None:
            skipped[name] = why or "package not installed"
            continue
        module = module.to(ctx.device)
        z = _latent(batch, side, ctx.device, grad=mode == "train")
        make = train_call if mode == "train" else eval_call
        fns[name] = make(name, module, z)
    slow = {"dcvq_t128_s128"} & set(fns) if mode == "train" else set()
    refs = [n for n in (BASELINE, "dcvq_vq") if n in fns]
    groups = [[n for n in fns if n not in slow]]
    if slow:
        groups.append([*slow, *refs])
    cmps = {}
    for i, group in enumerate(groups):
        ctx.log(f"  {BENCH} {config}: {', '.join(group)}")
        rounds = repeats if i == 0 else max(2, repeats // 3)
        cmp = compare({n: fns[n] for n in group}, device=ctx.device, warmup=1, repeats=rounds,
                      min_time=min_time if i == 0 else 0.0)  # fmt: skip
        for n in group:
            cmps.setdefault(n, cmp)  # the first comparison a case is in gives its row
    base = BASELINE if BASELINE in fns else "dcvq_vq"
    rows, ratios = [], {}
    positions = batch * side * side
    for name in CANDIDATES:
        if name in skipped:
            rows.append(not_measured(BENCH, name, config, skipped[name]))
            continue
        cmp = cmps[name]
        note = f"{len(cmp.times[name])} rounds"
        rows.append(
            row(BENCH, name, config, cmp=cmp, baseline=base, items=positions,
                unit="latent vectors", peak_mib=peak_memory(fns[name], ctx.device), note=note)
        )  # fmt: skip
        ratios[name] = cmp.ratio(name, base)
        if "dcvq_vq" in fns:
            ratios[f"{name}/dcvq_vq"] = cmp.ratio(name, "dcvq_vq")
    return rows, ratios


# ---------------------------------------------------------------- distance search


def addmm_nearest_code(z: Tensor, codebook: Tensor) -> Tensor:
    """dcvq's search with the product through ``torch.addmm`` (MKL on CPU) instead of
    oneDNN: what ``nearest_code`` did before the oneDNN change, and what it still does on
    CUDA and where PyTorch has no oneDNN."""
    saved = qsearch._ONEDNN_LINEAR
    qsearch._ONEDNN_LINEAR = False
    try:
        return qsearch.nearest_code(z, codebook)
    finally:
        qsearch._ONEDNN_LINEAR = saved


def unchunked_taming(z: Tensor, codebook: Tensor) -> Tensor:
    """taming's VectorQuantizer2 distance, verbatim maths: the full ``M x N`` matrix."""
    d = (
        torch.sum(z**2, dim=1, keepdim=True)
        + torch.sum(codebook**2, dim=1)
        - 2 * torch.einsum("bd,dn->bn", z, codebook.t())
    )
    return torch.argmin(d, dim=1)


def _distance_rows(
    ctx: Context, m: int, n_codes: int, repeats: int, min_time: float
) -> tuple[list[dict[str, Any]], dict[str, float | None]]:
    config = f"distance M={m} rows x N={n_codes} codes, d={DIM}"
    g = torch.Generator().manual_seed(1)
    z = torch.randn(m, DIM, generator=g).to(ctx.device)
    codebook = torch.randn(n_codes, DIM, generator=g).to(ctx.device)
    # The dual quantizer's search: both halves' rows stacked (each half contiguous, as it
    # makes them), each against its own codebook, in one call. The same multiply-adds as
    # one 256-d search, but twice the scores to write and reduce: the floor of dual/vq in
    # eval mode.
    halves = torch.stack([part.contiguous() for part in z.chunk(2, 1)])
    half_codebooks = torch.stack([part.contiguous() for part in codebook.chunk(2, 1)])
    fns = {
        "dcvq_nearest_code": lambda: qsearch.nearest_code(z, codebook),
        "dcvq_nearest_code_2x128": lambda: qsearch.nearest_code(halves, half_codebooks),
        "dcvq_addmm": lambda: addmm_nearest_code(z, codebook),
        "taming_unchunked": lambda: unchunked_taming(z, codebook),
    }
    # Same codes (random data: no near-ties at this scale).
    same = torch.equal(fns["dcvq_nearest_code"](), fns["taming_unchunked"]())
    ctx.log(f"  {BENCH} {config}")
    cmp = compare(fns, device=ctx.device, warmup=1, repeats=repeats, min_time=min_time)
    rows, peaks, ratios = [], {}, {}
    chunk_mib = qsearch.DISTANCE_CHUNK_ELEMENTS * 4 / 2**20
    for name in fns:
        peaks[name] = peak_memory(fns[name], ctx.device)
        chunked = name != "taming_unchunked" and m * n_codes > qsearch.DISTANCE_CHUNK_ELEMENTS
        note = f"chunks of {chunk_mib:.0f} MiB" if chunked else "one M x N matrix"
        if name == "dcvq_nearest_code":
            note += f"; same indices as taming: {same}"
        if name == "dcvq_nearest_code_2x128":
            note += f"; {cmp.ratio(name, 'dcvq_nearest_code'):.3f} x dcvq_nearest_code"
        rows.append(
            row(
                BENCH,
                name,
                config,
                cmp=cmp,
                baseline="taming_unchunked",
                items=m,
                unit="latent vectors",
                peak_mib=peaks[name],
                note=note,
            )
        )
        ratios[name] = cmp.ratio(name, "dcvq_nearest_code")
    return rows, peaks, ratios


# ---------------------------------------------------------------- entry


def run(ctx: Context) -> dict[str, Any]:
    batches = ctx.pick([2], [8], [8, 32])
    sizes = ctx.pick([64], [1024], [512, 1024])
    large = ctx.pick(256, 16384, 16384)
    large_batch = ctx.pick(2, 8, 8)
    side = ctx.pick(4, 16, 16)
    repeats = ctx.pick(2, 6, 9)
    min_time = ctx.pick(0.0, 0.15, 0.2)
    rows: list[dict[str, Any]] = []
    train_ratio: dict[str, list[float]] = {}
    eval_ratio: dict[str, list[float]] = {}
    shapes = [(b, n) for n in sizes for b in batches] + [(large_batch, large)]
    for batch, n in shapes:
        for mode, acc in (("train", train_ratio), ("eval", eval_ratio)):
            reps = repeats if n != large else max(2, repeats // 2)
            r, ratios = _mode_rows(ctx, mode, batch, side, n, reps, min_time)
            rows += r
            for key, value in ratios.items():
                acc.setdefault(key, []).append(value)

    dist_m = ctx.pick(2 * 16, 32 * 256, 32 * 256)
    dist_paper = ctx.pick(64, 1024, 1024)
    r, _, split = _distance_rows(ctx, dist_m, dist_paper, repeats, min_time)
    rows += r
    saved = qsearch.DISTANCE_CHUNK_ELEMENTS
    if ctx.size == "tiny":  # exercise the chunked path at a tiny size
        qsearch.DISTANCE_CHUNK_ELEMENTS = dist_m * 64
    try:
        r, peaks, _ = _distance_rows(ctx, dist_m, large, max(2, repeats // 3), min_time)
        chunk_mib = qsearch.DISTANCE_CHUNK_ELEMENTS * 4 / 2**20
    finally:
        qsearch.DISTANCE_CHUNK_ELEMENTS = saved
    rows += r

    def worst(acc: dict[str, list[float]], key: str) -> float | None:
        return max(acc[key]) if key in acc else None

    def each(acc: dict[str, list[float]], key: str) -> str:
        return "per shape: " + ", ".join(f"{v:.3f}" for v in acc.get(key, []))

    cpu_note = "; 16384 codes not measured on CPU" if ctx.device.type == "cpu" else ""
    floor = split["dcvq_nearest_code_2x128"]
    t128_note = f"; the split search alone (distance rows, N={dist_paper}): {floor:.3f}" + cpu_note
    targets = [
        target(
            f"{mode}: {name} / {ref} (worst shape)",
            worst(acc, key),
            limit,
            note=each(acc, key) + (t128_note if "t128" in name else ""),
        )
        for mode, acc in (("train", train_ratio), ("eval", eval_ratio))
        for name, ref, key, limit in (
            ("dcvq_vq", BASELINE, "dcvq_vq", 1.0),
            ("dcvq_s128_s128", BASELINE, "dcvq_s128_s128", 1.0),
            ("dcvq_t128_s128 (cached codebook)", "dcvq_vq", "dcvq_t128_s128/dcvq_vq", 1.05),
        )
        if mode == "eval" or "t128" not in name
    ]
    targets.append(
        target(
            f"distance peak MiB at N={large}, M={dist_m} (bound: 2 chunks = "
            f"{2 * chunk_mib:.0f} MiB)",
            peaks.get("dcvq_nearest_code"),
            2 * chunk_mib,
            note=f"unchunked taming formula: {_fmt(peaks.get('taming_unchunked'))} MiB",
        )
    )
    return {"rows": rows, "targets": targets}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f}"
