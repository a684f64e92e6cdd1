"""Data-dependent writes to code tables: k-means initialisation (``quantizer.kmeans_init``)
and dead-code restart (``quantizer.restart_unused_after``).

Both read the rows of each codebook's channels of the encoder latent
(:meth:`Quantizer.codebook_channels`) and write the tables the quantizer names
(:meth:`Quantizer.init_tables`, :meth:`Quantizer.code_tables`). The trainer runs them
outside the forward (their data-dependent control flow would break a compiled graph, and
under gradient accumulation they belong to the optimizer step, not to a micro-batch) with
the rows of every DDP rank gathered, then broadcasts the tables from rank 0: every rank
holds the same codes bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dcvq.quantizers.base import Quantizer
from dcvq.quantizers.search import nearest_code

KMEANS_ITERATIONS = 10


def latent_rows(z: Tensor, channels: slice) -> Tensor:
    """``B x C x h x w`` -> the ``B*h*w x width`` fp32 rows of ``channels``."""
    part = z[:, channels].detach().float()
    return part.permute(0, 2, 3, 1).reshape(-1, part.shape[1])


def kmeans(rows: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` centroids of ``rows`` (``M x d``): Lloyd's algorithm from ``n`` rows drawn
    without replacement (with replacement when ``M < n``, so some start equal; they stay
    apart only if the data separate them), ``KMEANS_ITERATIONS`` rounds; a centroid that
    loses all its rows keeps its place."""
    m = rows.shape[0]
    draw = torch.randperm(m, generator=generator)[:n] if m >= n else None
    if draw is None:
        draw = torch.randint(m, (n,), generator=generator)
    centroids = rows[draw.to(rows.device)].clone()
    for _ in range(KMEANS_ITERATIONS):
        assign = nearest_code(rows, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assign, rows)
        counts = torch.bincount(assign, minlength=n)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled].unsqueeze(1).to(rows.dtype)
    return centroids


@torch.no_grad()
def kmeans_init_(quantizer: Quantizer, z: Tensor, generator: torch.Generator) -> None:
    """Writes each of ``quantizer.init_tables()`` with the k-means centroids of its
    codebook's rows of ``z`` (the encoder latent of the first batches)."""
    tables = quantizer.init_tables()
    channels = dict(zip(quantizer.codebook_names, quantizer.codebook_channels(), strict=True))
    for name, table in tables.items():
        rows = latent_rows(z, channels[name])
        table.copy_(kmeans(rows, table.shape[0], generator).to(table.dtype))


@torch.no_grad()
def restart_unused_(
    quantizer: Quantizer, z: Tensor, counts: dict[str, Tensor], generator: torch.Generator
) -> dict[str, int]:
    """One optimizer step of dead-code restart: ``counts`` (each codebook's code counts of
    the step, summed over every rank) advance ``quantizer.unused_steps``; each code of
    ``quantizer.code_tables()`` unused for ``quantizer.restart_unused_after`` steps is
    replaced by a row of ``z`` drawn at random (its count starts again). Returns how many
    codes each codebook restarted."""
    after = quantizer.restart_unused_after
    channels = dict(zip(quantizer.codebook_names, quantizer.codebook_channels(), strict=True))
    restarted = {}
    for k, name in enumerate(quantizer.codebook_names):
        table = quantizer.code_tables().get(name)
        if table is None:
            continue
        unused = quantizer.unused_steps[k]
        unused.add_(1).masked_fill_(counts[name] > 0, 0)
        dead = (unused >= after).nonzero().squeeze(1)
        restarted[name] = len(dead)
        if len(dead):
            rows = latent_rows(z, channels[name])
            pick = torch.randint(rows.shape[0], (len(dead),), generator=generator)
            table[dead] = rows[pick.to(rows.device)].to(table.dtype)
            unused[dead] = 0
    return restarted
