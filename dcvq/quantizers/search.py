"""The nearest-code search: for each latent row, the index of the closest code (squared
L2), exact, with bounded memory, and fast CPU paths (oneDNN product, two-level argmax).

:func:`nearest_code` is all a quantizer needs; the rest is how it is computed. It runs one
search, or several at once (the dual quantizer's two halves): one set of kernels for all
of them, which is what a launch-bound GPU call pays for. The CPU paths are measured by
``benchmarks/quantizer.py`` (the ``distance`` rows).
"""

from __future__ import annotations

import itertools
import platform
from collections.abc import Iterable

import torch
from torch import Tensor

# Distances are computed in chunks of codes so that a 16k-code codebook never
# materialises a full (B*h*w) x N matrix when the batch is large.
DISTANCE_CHUNK_ELEMENTS = 2**24
# CPU only (benchmarks/quantizer.py measures both): rows are tiled so that a tile of
# scores (about CPU_TILE_ELEMENTS per search, at least 256 rows) stays in cache between
# the matrix multiply that writes it and the argmax that reads it; and the block width of
# the two-level argmax (see ``_argmax_rows``).
CPU_TILE_ELEMENTS = 2**20
CPU_ARGMAX_BLOCK = 64


def nearest_code(z: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest code (squared L2) for each row of ``z``; ties go to the lowest
    index, as ``argmin``. One search: ``z`` ``M x d`` against ``codebook`` ``N x d`` ->
    ``M``; or ``K`` at once: ``K x M x d`` against ``K x N x d`` -> ``K x M``, each
    stack of rows against its own codebook (searches of different widths: pad the
    narrower rows and codes with zeros, which add nothing to any score).

    Maximises the score ``z.e - |e|^2 / 2``: ``|z - e|^2 = |z|^2 - 2 score`` and ``|z|^2``
    is constant per row, so it cannot change the choice, and the factor ``-2`` is a power
    of two, so rounding ranks the scores exactly as ``|e|^2 - 2 z.e``. Each score
    matrix is one matrix multiply with the bias applied inside it (batched over the ``K``
    searches), written once and read once (by the argmax), and it is chunked over codes
    so that peak memory is bounded by ``DISTANCE_CHUNK_ELEMENTS`` whatever the codebook
    size. In eager CPU code the rows are also tiled (``CPU_TILE_ELEMENTS``), the matrix
    multiply goes to oneDNN (``_cpu_scores``, one call per search) and the argmax is
    two-level (``_argmax_rows``, over all searches at once); inside ``torch.compile``
    the search is the plain batched one, which traces as one graph.
    """
    # Indices carry no gradient: no autograd graph. fp32 always: bf16 distances pick
    # wrong codes.
    with torch.no_grad(), torch.autocast(z.device.type, enabled=False):
        return _nearest_code_fp32(z.float(), codebook.float())


# Below, ``z`` is ``M x d`` or ``K x M x d`` (and the codebook and its bias likewise): one
# search is not given a leading dimension, whose views and selections would add about 10%
# to the operations of a ``vq`` call.
def _nearest_code_fp32(z: Tensor, codebook: Tensor) -> Tensor:
    m, n = z.shape[-2], codebook.shape[-2]
    bias = codebook.pow(2).sum(-1).mul_(-0.5)
    cpu = z.device.type == "cpu" and not torch.compiler.is_compiling()
    rows = max(256, CPU_TILE_ELEMENTS // max(n, 1)) if cpu else m
    if rows >= m:
        return _nearest_in_tile(z, codebook, bias, cpu)
    out = torch.empty(z.shape[:-1], dtype=torch.long, device=z.device)
    for start in range(0, m, rows):
        tile = z[..., start : start + rows, :]
        out[..., start : start + rows] = _nearest_in_tile(tile, codebook, bias, cpu)
    return out


def _nearest_in_tile(z: Tensor, codebook: Tensor, bias: Tensor, cpu: bool) -> Tensor:
    n = codebook.shape[-2]
    scores = _cpu_scores if cpu else _scores
    chunk = max(1, DISTANCE_CHUNK_ELEMENTS // max(z.shape[:-1].numel(), 1))
    if chunk >= n:
        parts = scores(z, codebook, bias)
        best = _argmax_rows(parts) if cpu else _cat([s.argmax(1) for s in parts])
        return best.view(z.shape[:-1])
    best_s = torch.full(z.shape[:-1], float("-inf"), device=z.device).view(-1)
    best_i = torch.zeros(z.shape[:-1], dtype=torch.long, device=z.device).view(-1)
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        parts = scores(z, codebook[..., part, :], bias[..., part])
        maxima = [s.max(1) for s in parts]
        smax, imax = _cat([v for v, _ in maxima]), _cat([i for _, i in maxima])
        better = smax > best_s
        best_s = torch.where(better, smax, best_s)
        best_i = torch.where(better, imax + start, best_i)
        del parts, maxima, smax, imax  # one chunk alive at a time: free it before the next
    return best_i.view(z.shape[:-1])


def _cat(parts: list[Tensor]) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


# The score matrices of a tile come as a sequence whose rows, concatenated, are the
# searches' rows in order: one matrix where one product computes them all, one per search
# on CPU (made one at a time, as they are consumed).
def _scores(z: Tensor, codebook: Tensor, bias: Tensor) -> list[Tensor]:
    if z.dim() == 2:
        return [torch.addmm(bias, z, codebook.t())]
    s = torch.baddbmm(bias.unsqueeze(1), z, codebook.transpose(1, 2))
    return [s.view(-1, codebook.shape[1])]


# The same product through oneDNN, the library behind PyTorch's CPU convolutions. Its
# fp32 kernels use AVX-512 wherever the CPU has it, while the MKL build behind
# ``addmm`` keeps to AVX2 on AMD CPUs: about 2x on the Zen 4 machines that the
# benchmarks ran on (``benchmarks/quantizer.py``, the ``distance`` rows). x86-64 only
# (where it was measured), and only if a probe call gives the exact product.
def _onednn_linear_works() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        z, codebook, bias = torch.ones(2, 3), torch.ones(4, 3), torch.full((4,), 0.5)
        s = torch.ops.mkldnn._linear_pointwise(z, codebook, bias, "none", [], "")
    except (AttributeError, RuntimeError):  # op missing or not built for this CPU
        return False
    return torch.equal(s, torch.full((2, 4), 3.5))


_ONEDNN_LINEAR = _onednn_linear_works()


def _cpu_scores(z: Tensor, codebook: Tensor, bias: Tensor) -> Iterable[Tensor]:
    # One call per search: oneDNN's product has no batched form, and MKL's batched one
    # (``baddbmm``) is as slow as ``addmm``. Not inside torch.compile: inductor lowers
    # this op only for frozen (constant) weights.
    if not _ONEDNN_LINEAR:
        return _scores(z, codebook, bias)
    if z.dim() == 2:
        return [_onednn_scores(z, codebook, bias)]
    return (_onednn_scores(z[i], codebook[i], bias[i]) for i in range(z.shape[0]))


def _onednn_scores(z: Tensor, codebook: Tensor, bias: Tensor) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(z, codebook, bias, "none", [], "")


def _argmax_rows(parts: Iterable[Tensor]) -> Tensor:
    """``torch.cat(parts).argmax(1)`` for contiguous ``m x n`` matrices (one or several
    searches' scores, as ``_scores`` and ``_cpu_scores`` make them), about 1.6x faster
    on CPU, where ``argmax`` is a scalar loop but ``amax`` and element-wise ops are
    vectorised: the maxima of blocks of columns, the first block holding the row maximum,
    then the first column of that block equal to it (both by ``_first_equal``). Each
    matrix's block maxima are taken as soon as it is made (``parts`` may be a generator of
    products), while it is still in cache; the rest runs once over all of them, but for
    reading the chosen blocks. Same result, ties (first index) included; matrices whose
    maximum is NaN or infinite fall back to ``argmax``."""
    parts = iter(parts)
    first = next(parts)
    m, n = first.shape
    b = CPU_ARGMAX_BLOCK if n < 1024 else 2 * CPU_ARGMAX_BLOCK  # measured best widths
    if n % b or n < 2 * b or m * n < 2**16:  # small: ~25 µs of fixed cost do not pay
        return _cat([s.argmax(1) for s in itertools.chain([first], parts)])
    kept, maxima = [], []
    for s in itertools.chain([first], parts):
        kept.append(s)
        maxima.append(s.view(m, n // b, b).amax(2))
    block_max = _cat(maxima)
    row_max = block_max.amax(1, keepdim=True)
    if not row_max.isfinite().all():  # NaN or inf: keep argmax's own rules for them
        return _cat([s.argmax(1) for s in kept])
    best = _first_equal(block_max, row_max)
    # the row of each chosen block in its matrix seen as (m * n / b) x b
    start = torch.arange(0, m * (n // b), n // b, device=best.device)
    picks = best.view(len(kept), m) + start
    blocks = _cat([s.view(-1, b).index_select(0, picks[i]) for i, s in enumerate(kept)])
    return best * b + _first_equal(blocks, row_max)


def _first_equal(x: Tensor, value: Tensor) -> Tensor:
    """Index of the first entry of each row of ``x`` equal to ``value`` (``M x 1``, the
    row's maximum), without a scalar loop: ``sign(x - value) + 1`` is 1 there and 0
    elsewhere; weighted by ``n, n-1, ..., 1`` its maximum is ``n - index``."""
    n = x.shape[1]
    weight = torch.arange(n, 0, -1, dtype=x.dtype, device=x.device)
    hit = torch.addcmul(weight, (x - value).sign_(), weight)
    return n - hit.amax(1).long()
