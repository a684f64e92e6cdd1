"""Codebook usage over a whole split, as the literature reports it.

Counts are accumulated over every token of every image (per-batch statistics depend on
the batch size). Per codebook: ``usage`` = percentage of codes used at least once,
``dead`` = codes never used, ``perplexity`` = ``exp(-sum p log p)`` of the code
frequencies, and the full count vector. For two codebooks (the dual quantizer, global
first) the joint use of ``(global, local)`` pairs is reported too.

Usage alone cannot see a collapsed codebook: when all code vectors are (nearly) one
vector, ties are broken by rounding and many indices get used. Given the code vectors
(:func:`code_vectors`), ``distinct`` counts the used codes that are not within
``DUPLICATE_TOL`` of the codebook's RMS code norm of an earlier used code, and
``distinct_usage`` is that count in percent of the codebook's size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

#: two codes closer than this fraction of their codebook's RMS code norm are one code
DUPLICATE_TOL = 1e-2


def perplexity(counts: Tensor) -> float:
    """``exp`` of the entropy (nats) of a count vector; 0 when nothing was counted."""
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0].double() / total.double()
    return math.exp(float(-(p * p.log()).sum()))


def distinct_codes(vectors: Tensor, used: Tensor, tol: float = DUPLICATE_TOL) -> int:
    """Used codes (``N x D`` ``vectors``, bool mask ``used``) that are not within ``tol``
    times the RMS code norm of an earlier used code."""
    v = vectors[used].double()
    if len(v) == 0:
        return 0
    radius = tol * float(v.pow(2).sum(1).mean().sqrt())
    duplicate = torch.zeros(len(v), dtype=torch.bool)
    for start in range(0, len(v), 1024):  # N x N distances in blocks: N may be 16384
        d = torch.cdist(v[start : start + 1024], v)
        rows = torch.arange(start, start + len(d))
        earlier = torch.arange(len(v)) < rows[:, None]
        duplicate[rows] = ((d <= radius) & earlier).any(1)
    return int((~duplicate).sum())


@torch.no_grad()
def code_vectors(quantizer: nn.Module) -> list[Tensor]:
    """Each codebook's code vectors as the quantizer decodes them (``N x dim``, on CPU).

    Through the one ``decode_indices`` interface: code ``i`` of codebook ``k`` is the
    latent decoded from index ``i`` there and index 0 in the others, keeping the channels
    that differ between codes (the dual quantizer's global codes come out of its
    transformer, as in the lookup).
    """
    device = next(quantizer.parameters()).device
    out = []
    for k, n in enumerate(quantizer.codebook_sizes):
        idx = torch.zeros(n, len(quantizer.codebook_sizes), 1, 1, dtype=torch.long, device=device)
        idx[:, k, 0, 0] = torch.arange(n, device=device)
        v = quantizer.decode_indices(idx).float().reshape(n, -1).cpu()
        # only this codebook's channels: the others hold one code's constant values
        own = (v != v[:1]).any(0)
        out.append(v[:, own] if own.any() else v)
    return out


class PairCounter:
    """Counts distinct ``(global, local)`` pairs without an ``N*N`` table.

    ``N = 16384`` would need 2**28 counters; instead the distinct pair ids seen so far
    are kept sorted with their counts, so memory grows with the pairs actually used.
    New batches are buffered and merged when the buffer outgrows the table (amortised
    ``O(n log n)`` over the split).
    """

    def __init__(self, n_local: int) -> None:
        self.n_local = n_local
        self.ids = torch.empty(0, dtype=torch.long)
        self.counts = torch.empty(0, dtype=torch.long)
        self._pending: list[tuple[Tensor, Tensor]] = []
        self._pending_len = 0

    def update(self, global_idx: Tensor, local_idx: Tensor) -> None:
        ids = global_idx.reshape(-1).long() * self.n_local + local_idx.reshape(-1).long()
        uniq, cnt = torch.unique(ids.cpu(), return_counts=True)
        self._pending.append((uniq, cnt))
        self._pending_len += uniq.numel()
        if self._pending_len > max(self.ids.numel(), 1 << 16):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        ids = torch.cat([self.ids, *(u for u, _ in self._pending)])
        cnt = torch.cat([self.counts, *(c for _, c in self._pending)])
        self.ids, inverse = torch.unique(ids, return_inverse=True)
        self.counts = torch.zeros_like(self.ids).scatter_add_(0, inverse, cnt)
        self._pending, self._pending_len = [], 0

    def result(self) -> tuple[int, float]:
        """``(distinct pairs used, perplexity of the pair distribution)``."""
        self._merge()
        return int(self.ids.numel()), perplexity(self.counts)


class CodebookUsage:
    """Accumulates ``B x K x h x w`` index maps; :meth:`result` gives the JSON-ready stats."""

    def __init__(self, names: Sequence[str], sizes: Sequence[int]) -> None:
        if len(names) != len(sizes):
            raise ValueError(f"{len(names)} codebook names but {len(sizes)} sizes")
        self.names, self.sizes = tuple(names), tuple(int(s) for s in sizes)
        self.counts = [torch.zeros(n, dtype=torch.long) for n in self.sizes]
        self.pairs = PairCounter(self.sizes[1]) if len(self.sizes) == 2 else None

    def update(self, indices: Tensor) -> None:
        if indices.dim() != 4 or indices.shape[1] != len(self.sizes):
            raise ValueError(
                f"expected B x {len(self.sizes)} x h x w indices, got {tuple(indices.shape)}"
            )
        for k, n in enumerate(self.sizes):
            idx = indices[:, k].reshape(-1)
            # bincount on the model's device, then one small transfer
            self.counts[k] += torch.bincount(idx, minlength=n).cpu()
        if self.pairs is not None:
            self.pairs.update(indices[:, 0], indices[:, 1])

    def result(self, vectors: Sequence[Tensor] | None = None) -> dict[str, Any]:
        """``{"codebooks": {name: stats}}`` plus ``"pairs"`` for two codebooks; with each
        codebook's code ``vectors`` (:func:`code_vectors`) also ``distinct`` and
        ``distinct_usage``."""
        books = {}
        for k, (name, n, counts) in enumerate(
            zip(self.names, self.sizes, self.counts, strict=True)
        ):
            used = int((counts > 0).sum())
            books[name] = {
                "size": n,
                "used": used,
                "usage": 100.0 * used / n,  # percent, as papers report it
                "dead": n - used,
                "perplexity": perplexity(counts),
                "counts": counts.tolist(),
            }
            if vectors is not None:
                distinct = distinct_codes(vectors[k], counts > 0)
                books[name] |= {"distinct": distinct, "distinct_usage": 100.0 * distinct / n}
        out: dict[str, Any] = {"codebooks": books}
        if self.pairs is not None:
            unique, ppl = self.pairs.result()
            possible = self.sizes[0] * self.sizes[1]
            out["pairs"] = {
                "unique": unique,
                "possible": possible,
                "usage": 100.0 * unique / possible,
                "perplexity": ppl,
            }
        return out
