"""Nearest-neighbour VQ over the whole latent: taming's VectorQuantizer2 (the VQ-GAN row)."""

from __future__ import annotations

import torch
from torch import Tensor

from dcvq.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    code_counts,
    commitment_loss,
    nearest_code,
    straight_through,
)
from dcvq.quantizers.codebooks import Codebook


def quantize_channels_last(z: Tensor, codebook: Tensor) -> tuple[Tensor, Tensor]:
    """Quantize ``B x d x h x w`` against ``N x d``: returns (codes ``B x d x h x w``,
    indices ``B x h x w``)."""
    b, d, h, w = z.shape
    flat = z.permute(0, 2, 3, 1).reshape(-1, d)
    idx = nearest_code(flat, codebook)
    q = codebook[idx].float().view(b, h, w, d).permute(0, 3, 1, 2)
    return q, idx.view(b, h, w)


class VectorQuantizer(Quantizer):
    codebook_names = ("codebook",)

    def __init__(
        self, codebook_size: int, dim: int, beta: float = 0.25, legacy_beta: bool = False
    ) -> None:
        super().__init__()
        self.dim = dim
        self.codebook_sizes = (codebook_size,)
        self.beta = beta
        self.legacy_beta = legacy_beta
        self.codebook = Codebook(codebook_size, dim)

    def forward(self, z: Tensor) -> QuantizerOutput:
        with torch.autocast(z.device.type, enabled=False):
            z = z.float()
            q, idx = quantize_channels_last(z, self.codebook())
            loss = commitment_loss(z, q, self.beta, self.legacy_beta)
            return QuantizerOutput(
                z_q=straight_through(z, q),
                loss=loss,
                indices=idx.unsqueeze(1),
                losses={"codebook": loss.detach()},
                counts={"codebook": code_counts(idx, self.codebook_sizes[0])},
            )

    def decode_indices(self, indices: Tensor) -> Tensor:
        return self.codebook()[indices[:, 0]].float().permute(0, 3, 1, 2).contiguous()
