"""Nearest-neighbour VQ over the whole latent: the VQ-GAN row of the paper's ablation.

taming's VectorQuantizer2 search and straight-through estimator, with the Dual Codebook
release's loss convention by default (``legacy_beta=False``: beta on the commitment term,
as the dual rows); ``legacy_beta=True`` is taming's own default (``+baseline=vqgan_taming``
trains VQ-GAN exactly as taming does). ``rotation_trick=True`` replaces the straight-through
estimator by Fifty et al.'s rotation trick (:func:`dcvq.quantizers.base.rotation_trick`):
the same codes, another gradient for the encoder."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dcvq.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    code_counts,
    commitment_loss,
    rotation_trick,
    straight_through,
)
from dcvq.quantizers.codebooks import Codebook
from dcvq.quantizers.search import nearest_code


def to_rows(z: Tensor) -> Tensor:
    """``B x C x h x w`` -> ``(B*h*w) x C`` (one copy, channels last)."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def as_map(rows: Tensor, b: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`to_rows` as a view: ``B x C x h x w`` with channels last in memory."""
    return rows.view(b, h, w, -1).permute(0, 3, 1, 2)


def from_rows(rows: Tensor, b: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`to_rows`, contiguous ``B x C x h x w``."""
    return as_map(rows, b, h, w).contiguous()


def quantize_rows(
    rows: Tensor, codebook: Tensor, beta: float, legacy: bool, rotate: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Quantize latent vectors ``M x d`` (rows may be a column slice of a wider matrix)
    against ``N x d``: (straight-through codes ``M x d``, indices ``M``, VQ loss);
    ``rotate``: the rotation trick's gradient instead of the straight-through one.

    All element-wise work (loss, straight-through) happens on the rows, where the codes
    and the latent share one layout, and the lookup is ``F.embedding``, whose backward is
    a dense index-add rather than ``index_put``'s accumulate."""
    idx = nearest_code(rows, codebook)
    q = F.embedding(idx, codebook).float()
    if not (rows.requires_grad or q.requires_grad):
        # Encoding without autograd: both loss terms have the same value and the
        # straight-through output is ``q`` itself, so skip the extra passes.
        return q, idx, (1 + beta) * F.mse_loss(q, rows)
    loss = commitment_loss(rows, q, beta, legacy)
    return (rotation_trick if rotate else straight_through)(rows, q), idx, loss


def quantize_latent(
    z: Tensor, codebook: Callable[[], Tensor], beta: float, legacy: bool, rotate: bool = False
) -> QuantizerOutput:
    """One codebook (``codebook()``: its ``N x C`` table, made inside fp32) over all
    channels of ``z`` (``B x C x h x w``): the forward of ``vq`` and of SimVQ."""
    with torch.autocast(z.device.type, enabled=False):
        z = z.float()
        b, _, h, w = z.shape
        table = codebook()
        q, idx, loss = quantize_rows(to_rows(z), table, beta, legacy, rotate)
        idx = idx.view(b, h, w)
        return QuantizerOutput(
            z_q=from_rows(q, b, h, w),
            loss=loss,
            indices=idx.unsqueeze(1),
            losses={"codebook": loss.detach()},
            counts={"codebook": code_counts(idx, table.shape[0])},
        )


class VectorQuantizer(Quantizer):
    codebook_names = ("codebook",)

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        beta: float = 0.25,
        legacy_beta: bool = False,
        rotation_trick: bool = False,
        kmeans_init: bool = False,
        restart_unused_after: int = 0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.codebook_sizes = (codebook_size,)
        self.beta = beta
        self.legacy_beta = legacy_beta
        self.rotation_trick = rotation_trick
        self.kmeans_init = kmeans_init
        self.codebook = Codebook(codebook_size, dim)
        self.track_unused(restart_unused_after)

    def codebook_parameters(self) -> list[nn.Parameter]:
        return list(self.codebook.parameters())

    def code_tables(self) -> dict[str, nn.Parameter]:
        return {"codebook": self.codebook.embedding.weight}

    def forward(self, z: Tensor) -> QuantizerOutput:
        return quantize_latent(z, self.codebook, self.beta, self.legacy_beta, self.rotation_trick)

    def decode_indices(self, indices: Tensor) -> Tensor:
        return self.codebook()[indices[:, 0]].float().permute(0, 3, 1, 2).contiguous()
