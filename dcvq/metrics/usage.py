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

The geometry of the used codes says how far from collapse a codebook is, before it gets
there (:func:`code_geometry`): ``effective_rank`` (``exp`` of the entropy of the normalised
singular values ``p_i = s_i / sum s`` of the used codes: 1 for codes on one line, up to
their dimension), ``min_distance`` and ``nn_distance_p5`` (the smallest and the 5th
percentile of each used code's distance to its nearest other used code, over the RMS code
norm; 0 with fewer than two used codes). With the split's quantisation error (the mean
over positions of the squared distance between a latent and its code, which the
quantizer reports per batch: ``Quantizer.quantization_errors``), also
``quantization_error`` (its root, over the RMS code norm, the scale of the distances) and
``distinct_at_quantization``: distinct codes at that root as the tolerance, i.e. codes
farther apart than a latent typically lies from its code. For a quantizer that projects
(FSQ, LFQ) the error is measured in the latent, so it includes what the projection drops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
    return _scan(v, [tol * _rms(v)])[1][0] if len(v) else 0


def _rms(v: Tensor) -> float:
    return float(v.pow(2).sum(1).mean().sqrt()) if len(v) else 0.0


def _scan(v: Tensor, radii: Sequence[float]) -> tuple[Tensor, list[int]]:
    """One pass over the ``n x n`` distances of the codes ``v`` (float64), in blocks of
    rows (n may be 16384): each code's distance to its nearest other code, and per radius
    the number of codes not within it of an earlier code."""
    n = len(v)
    nearest = torch.full((n,), math.inf, dtype=torch.float64)
    duplicate = [torch.zeros(n, dtype=torch.bool) for _ in radii]
    for start in range(0, n, 1024):
        d = torch.cdist(v[start : start + 1024], v)
        rows = torch.arange(start, start + len(d))
        d[torch.arange(len(d)), rows] = math.inf  # not its own neighbour
        nearest[rows] = d.min(1).values
        earlier = torch.arange(n) < rows[:, None]
        for dup, radius in zip(duplicate, radii, strict=True):
            dup[rows] = ((d <= radius) & earlier).any(1)
    return nearest, [int((~dup).sum()) for dup in duplicate]


def effective_rank(v: Tensor) -> float:
    """``exp`` of the entropy of the normalised singular values of ``v`` (rows: codes);
    0 for no codes or only zero vectors."""
    if len(v) == 0:
        return 0.0
    s = torch.linalg.svdvals(v.double())
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return math.exp(float(-(p * p.log()).sum()))


def code_geometry(
    vectors: Tensor, used: Tensor, sq_error: float | None = None
) -> dict[str, int | float]:
    """The used codes' ``distinct``, ``effective_rank``, ``min_distance`` and
    ``nn_distance_p5`` and, given the mean squared quantisation error ``sq_error``,
    ``quantization_error`` and ``distinct_at_quantization`` (the module's docstring)."""
    v = vectors[used].double()
    rms = _rms(v)
    radii = [DUPLICATE_TOL * rms]
    if sq_error is not None:
        radii.append(math.sqrt(max(sq_error, 0.0)))
    nearest, distinct = _scan(v, radii)

    def relative(x: float) -> float:
        return x / rms if rms > 0 else 0.0  # no norm to compare with: all codes are 0

    two = len(v) >= 2
    out: dict[str, int | float] = {
        "distinct": distinct[0],
        "effective_rank": effective_rank(v),
        "min_distance": relative(float(nearest.min())) if two else 0.0,
        "nn_distance_p5": relative(float(torch.quantile(nearest, 0.05))) if two else 0.0,
    }
    if sq_error is not None:
        out["quantization_error"] = relative(radii[1])
        out["distinct_at_quantization"] = distinct[1]
    return out


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
    """Accumulates ``B x K x h x w`` index maps (and the quantisation error per codebook);
    :meth:`result` gives the JSON-ready stats."""

    def __init__(self, names: Sequence[str], sizes: Sequence[int]) -> None:
        if len(names) != len(sizes):
            raise ValueError(f"{len(names)} codebook names but {len(sizes)} sizes")
        self.names, self.sizes = tuple(names), tuple(int(s) for s in sizes)
        self.counts = [torch.zeros(n, dtype=torch.long) for n in self.sizes]
        self.pairs = PairCounter(self.sizes[1]) if len(self.sizes) == 2 else None
        # per codebook: sum over positions of the squared quantisation error, and positions
        self.sq_error = [0.0] * len(self.sizes)
        self.error_positions = [0] * len(self.sizes)

    def update(self, indices: Tensor, errors: Mapping[str, Tensor] | None = None) -> None:
        """``errors``: per codebook name, the batch's mean over positions of the squared
        distance between latent and code (``Quantizer.quantization_errors``; VQModel's
        ``info["errors"]``)."""
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
        for k, name in enumerate(self.names):
            if errors is not None and name in errors:
                positions = indices[:, k].numel()
                self.sq_error[k] += float(errors[name]) * positions
                self.error_positions[k] += positions

    def result(self, vectors: Sequence[Tensor] | None = None) -> dict[str, Any]:
        """``{"codebooks": {name: stats}}`` plus ``"pairs"`` for two codebooks; with each
        codebook's code ``vectors`` (:func:`code_vectors`) also ``distinct``,
        ``distinct_usage`` and the geometry of :func:`code_geometry` (its quantisation
        keys where :meth:`update` was given the errors)."""
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
                positions = self.error_positions[k]
                sq_error = self.sq_error[k] / positions if positions else None
                geometry = code_geometry(vectors[k], counts > 0, sq_error)
                distinct = int(geometry["distinct"])
                books[name] |= {"distinct": distinct, "distinct_usage": 100.0 * distinct / n}
                books[name] |= {key: v for key, v in geometry.items() if key != "distinct"}
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
