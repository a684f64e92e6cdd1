"""The interface every quantizer implements, and the maths they share.

A quantizer maps an encoder latent ``B x C x h x w`` to its quantized version and to
``K`` index maps (one per codebook). Everything the training loop and the metrics need
(loss parts and code counts per codebook) travels in :class:`QuantizerOutput`, so the
loop never needs to know which quantizer it runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

# Distances are computed in chunks of codes so that a 16k-code codebook never
# materialises a full (B*h*w) x N matrix when the batch is large.
DISTANCE_CHUNK_ELEMENTS = 2**24
# CPU only (benchmarks/quantizer.py measures both): rows are tiled so that a tile of
# distances (about CPU_TILE_ELEMENTS, at least 256 rows) stays in cache between the matrix
# multiply that writes it and the argmin that reads it; and the block width of the
# two-level argmin (see ``_argmin_rows``).
CPU_TILE_ELEMENTS = 2**20
CPU_ARGMIN_BLOCK = 64


@dataclass
class QuantizerOutput:
    """What a quantizer returns for one batch.

    ``losses`` and ``counts`` are keyed by codebook name (``codebook_names``);
    ``counts[name]`` is the batch's histogram of code indices (length ``N``, detached).
    """

    z_q: Tensor
    loss: Tensor
    indices: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    counts: dict[str, Tensor] = field(default_factory=dict)


class Quantizer(nn.Module, ABC):
    """Base class: ``forward(z) -> QuantizerOutput``, ``decode_indices(idx) -> z_q``."""

    #: one name per codebook, in the order of the ``K`` axis of the indices
    codebook_names: tuple[str, ...]
    #: number of codes in each codebook, same order
    codebook_sizes: tuple[int, ...]
    #: channels of the latent this quantizer accepts
    dim: int

    @abstractmethod
    def forward(self, z: Tensor) -> QuantizerOutput: ...

    @abstractmethod
    def decode_indices(self, indices: Tensor) -> Tensor:
        """``B x K x h x w`` LongTensor -> quantized latent ``B x C x h x w``."""


def nearest_code(z: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest code (squared L2) for each row of ``z`` (``M x d``); ties go
    to the lowest index, as ``argmin``.

    Uses ``|e|^2 - 2 z.e`` (``|z|^2`` is constant per row, so it cannot change the
    argmin), chunked over codes so peak memory is bounded by ``DISTANCE_CHUNK_ELEMENTS``
    whatever the codebook size. Each chunk is one ``addmm``: the ``-2`` scale and the
    ``|e|^2`` bias are applied by the matrix multiply itself, so the distance matrix is
    written once and read once (by the argmin). On CPU the rows are also tiled
    (``CPU_TILE_ELEMENTS``) and the argmin is two-level (``_argmin_rows``).
    """
    # Indices carry no gradient: no autograd graph. fp32 always: bf16 distances pick
    # wrong codes.
    with torch.no_grad(), torch.autocast(z.device.type, enabled=False):
        return _nearest_code_fp32(z.float(), codebook.float())


def _nearest_code_fp32(z: Tensor, codebook: Tensor) -> Tensor:
    m, n = z.shape[0], codebook.shape[0]
    e_sq = codebook.pow(2).sum(1)
    cpu = z.device.type == "cpu"
    rows = max(256, CPU_TILE_ELEMENTS // max(n, 1)) if cpu else m
    if rows >= m:
        return _nearest_in_tile(z, codebook, e_sq, cpu)
    out = torch.empty(m, dtype=torch.long, device=z.device)
    for start in range(0, m, rows):
        out[start : start + rows] = _nearest_in_tile(z[start : start + rows], codebook, e_sq, cpu)
    return out


def _nearest_in_tile(z: Tensor, codebook: Tensor, e_sq: Tensor, cpu: bool) -> Tensor:
    m, n = z.shape[0], codebook.shape[0]
    chunk = max(1, DISTANCE_CHUNK_ELEMENTS // max(m, 1))
    if chunk >= n:
        d = torch.addmm(e_sq, z, codebook.t(), alpha=-2)
        return _argmin_rows(d) if cpu else d.argmin(1)
    best_d = torch.full((m,), float("inf"), device=z.device)
    best_i = torch.zeros(m, dtype=torch.long, device=z.device)
    for start in range(0, n, chunk):
        part = codebook[start : start + chunk]
        d = torch.addmm(e_sq[start : start + chunk], z, part.t(), alpha=-2)
        dmin, imin = d.min(1)
        better = dmin < best_d
        best_d = torch.where(better, dmin, best_d)
        best_i = torch.where(better, imin + start, best_i)
        del d, dmin, imin  # one chunk alive at a time: free it before the next addmm
    return best_i


def _argmin_rows(d: Tensor) -> Tensor:
    """``d.argmin(1)`` for a contiguous ``M x N`` matrix, about twice as fast on CPU, where
    ``argmin`` is not vectorised but ``amin`` is: the minimum of each block of
    ``CPU_ARGMIN_BLOCK`` columns, the first block holding the row minimum, then the
    argmin within that block. Same result, ties (first index) and NaN included."""
    m, n = d.shape
    b = CPU_ARGMIN_BLOCK
    if n % b or n < 2 * b:
        return d.argmin(1)
    blocks = d.view(m, n // b, b)
    best = blocks.amin(2).argmin(1)
    inner = blocks[torch.arange(m, device=d.device), best].argmin(1)
    return best * b + inner


def commitment_loss(z: Tensor, q: Tensor, beta: float, legacy: bool) -> Tensor:
    """VQ-VAE codebook + commitment loss.

    ``legacy=False`` (the Dual Codebook release): ``|sg[z]-q|^2 + beta |z-sg[q]|^2``.
    ``legacy=True`` (taming's VectorQuantizer2 default): beta scales the other term.
    """
    codebook_term = torch.mean((q - z.detach()) ** 2)
    commit_term = torch.mean((q.detach() - z) ** 2)
    if legacy:
        return commit_term + beta * codebook_term
    return codebook_term + beta * commit_term


def straight_through(z: Tensor, q: Tensor) -> Tensor:
    """Forward value ``q``, gradient passed to ``z`` unchanged."""
    return z + (q - z).detach()


def code_counts(indices: Tensor, n: int) -> Tensor:
    return torch.bincount(indices.reshape(-1), minlength=n).detach()
