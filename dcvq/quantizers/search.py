"""The nearest-code search: for each latent row, the index of the closest code (squared
L2), exact, with bounded memory, and fast CPU paths (oneDNN product, two-level argmax).

:func:`nearest_code` is all a quantizer needs; the rest is how it is computed. The CPU
paths are measured by ``benchmarks/quantizer.py`` (the ``distance`` rows).
"""

from __future__ import annotations

import platform

import torch
from torch import Tensor

# Distances are computed in chunks of codes so that a 16k-code codebook never
# materialises a full (B*h*w) x N matrix when the batch is large.
DISTANCE_CHUNK_ELEMENTS = 2**24
# CPU only (benchmarks/quantizer.py measures both): rows are tiled so that a tile of
# scores (about CPU_TILE_ELEMENTS, at least 256 rows) stays in cache between the matrix
# multiply that writes it and the argmax that reads it; and the block width of the
# two-level argmax (see ``_argmax_rows``).
CPU_TILE_ELEMENTS = 2**20
CPU_ARGMAX_BLOCK = 64


def nearest_code(z: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest code (squared L2) for each row of ``z`` (``M x d``); ties go
    to the lowest index, as ``argmin``.

    Maximises the score ``z.e - |e|^2 / 2``: ``|z - e|^2 = |z|^2 - 2 score`` and ``|z|^2``
    is constant per row, so it cannot change the choice, and the factor ``-2`` is a power
    of two, so rounding ranks the scores exactly as ``|e|^2 - 2 z.e``. Each score
    matrix is one matrix multiply with the bias applied inside it, written once and read
    once (by the argmax), and it is chunked over codes so that peak memory is bounded by
    ``DISTANCE_CHUNK_ELEMENTS`` whatever the codebook size. On CPU the rows are also tiled
    (``CPU_TILE_ELEMENTS``), the matrix multiply goes to oneDNN (``_cpu_scores``) and the
    argmax is two-level (``_argmax_rows``).
    """
    # Indices carry no gradient: no autograd graph. fp32 always: bf16 distances pick
    # wrong codes.
    with torch.no_grad(), torch.autocast(z.device.type, enabled=False):
        return _nearest_code_fp32(z.float(), codebook.float())


def _nearest_code_fp32(z: Tensor, codebook: Tensor) -> Tensor:
    m, n = z.shape[0], codebook.shape[0]
    bias = codebook.pow(2).sum(1).mul_(-0.5)
    cpu = z.device.type == "cpu"
    rows = max(256, CPU_TILE_ELEMENTS // max(n, 1)) if cpu else m
    if rows >= m:
        return _nearest_in_tile(z, codebook, bias, cpu)
    out = torch.empty(m, dtype=torch.long, device=z.device)
    for start in range(0, m, rows):
        out[start : start + rows] = _nearest_in_tile(z[start : start + rows], codebook, bias, cpu)
    return out


def _nearest_in_tile(z: Tensor, codebook: Tensor, bias: Tensor, cpu: bool) -> Tensor:
    m, n = z.shape[0], codebook.shape[0]
    scores = _cpu_scores if cpu else _scores
    chunk = max(1, DISTANCE_CHUNK_ELEMENTS // max(m, 1))
    if chunk >= n:
        s = scores(z, codebook, bias)
        return _argmax_rows(s) if cpu else s.argmax(1)
    best_s = torch.full((m,), float("-inf"), device=z.device)
    best_i = torch.zeros(m, dtype=torch.long, device=z.device)
    for start in range(0, n, chunk):
        s = scores(z, codebook[start : start + chunk], bias[start : start + chunk])
        smax, imax = s.max(1)
        better = smax > best_s
        best_s = torch.where(better, smax, best_s)
        best_i = torch.where(better, imax + start, best_i)
        del s, smax, imax  # one chunk alive at a time: free it before the next one
    return best_i


def _scores(z: Tensor, codebook: Tensor, bias: Tensor) -> Tensor:
    return torch.addmm(bias, z, codebook.t())


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


def _cpu_scores(z: Tensor, codebook: Tensor, bias: Tensor) -> Tensor:
    # Inside torch.compile, inductor lowers this op only for frozen (constant) weights.
    if _ONEDNN_LINEAR and not torch.compiler.is_compiling():
        return torch.ops.mkldnn._linear_pointwise(z, codebook, bias, "none", [], "")
    return _scores(z, codebook, bias)


def _argmax_rows(s: Tensor) -> Tensor:
    """``s.argmax(1)`` for a contiguous ``M x N`` matrix, about 1.6x faster on CPU, where
    ``argmax`` is a scalar loop but ``amax`` and element-wise ops are vectorised: the
    maxima of blocks of columns, the first block holding the row maximum, then the first
    column of that block equal to it (both by ``_first_equal``). Same result, ties
    (first index) included; a matrix whose maximum is NaN or infinite falls back to
    ``argmax``."""
    m, n = s.shape
    b = CPU_ARGMAX_BLOCK if n < 1024 else 2 * CPU_ARGMAX_BLOCK  # measured best widths
    if n % b or n < 2 * b or m * n < 2**16:  # small: ~25 µs of fixed cost do not pay
        return s.argmax(1)
    block_max = s.view(m, n // b, b).amax(2)
    row_max = block_max.amax(1, keepdim=True)
    if not row_max.isfinite().all():  # NaN or inf: keep argmax's own rules for them
        return s.argmax(1)
    best = _first_equal(block_max, row_max)
    start = torch.arange(0, m * (n // b), n // b, device=s.device)
    block = s.view(-1, b).index_select(0, start + best)  # M x b, one contiguous row each
    return best * b + _first_equal(block, row_max)


def _first_equal(x: Tensor, value: Tensor) -> Tensor:
    """Index of the first entry of each row of ``x`` equal to ``value`` (``M x 1``, the
    row's maximum), without a scalar loop: ``sign(x - value) + 1`` is 1 there and 0
    elsewhere; weighted by ``n, n-1, ..., 1`` its maximum is ``n - index``."""
    n = x.shape[1]
    weight = torch.arange(n, 0, -1, dtype=x.dtype, device=x.device)
    hit = torch.addcmul(weight, (x - value).sign_(), weight)
    return n - hit.amax(1).long()
