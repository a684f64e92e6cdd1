"""SimVQ (Zhu et al. 2024, "Addressing Representation Collapse in Vector Quantized Models
with One Linear Layer"): the SimVQ row.

Nearest-neighbour VQ against the codebook ``C W``: ``C`` a frozen random table (normal,
std ``dim^-1/2``, as the authors' release), ``W`` one learned linear layer (with bias, as
the release's ``nn.Linear``). The codebook loss moves ``W``, hence every code at once,
instead of the few codes a batch selects, which is the paper's remedy for collapse. The
search, loss and straight-through estimator are VQ-GAN's (:func:`dcvq.quantizers.vq.
quantize_rows`), with the release's loss convention (beta on the commitment term).

Written here rather than wrapped from ``vector_quantize_pytorch.SimVQ``: the library
decodes indices through another product than its lookup (``W`` applied to the gathered
rows), so ``decode_indices`` would differ from the forward by rounding, it defaults to the
rotation trick and a bias-free ``W``, and it searches with a full ``cdist``.

``C`` is a buffer (checkpointed, so a resumed run keeps it) drawn from the global RNG at
construction: the trainer seeds every rank alike, and DDP broadcasts buffers from rank 0,
so all ranks hold the same codebook. Nothing else is stateful.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dcvq.quantizers.base import Quantizer, QuantizerOutput
from dcvq.quantizers.vq import quantize_latent


class SimVQQuantizer(Quantizer):
    codebook_names = ("codebook",)

    def __init__(
        self, codebook_size: int, dim: int, beta: float = 0.25, legacy_beta: bool = False
    ) -> None:
        super().__init__()
        self.dim = dim
        self.codebook_sizes = (codebook_size,)
        self.beta, self.legacy_beta = beta, legacy_beta
        self.register_buffer("frozen_codebook", torch.randn(codebook_size, dim) * dim**-0.5)
        self.proj = nn.Linear(dim, dim)

    def codebook(self) -> Tensor:
        """The ``N x dim`` code table ``C W`` (recomputed: ``W`` changes every step)."""
        return self.proj(self.frozen_codebook)

    def codebook_parameters(self) -> list[nn.Parameter]:
        return list(self.proj.parameters())

    def forward(self, z: Tensor) -> QuantizerOutput:
        return quantize_latent(z, self.codebook, self.beta, self.legacy_beta)

    def decode_indices(self, indices: Tensor) -> Tensor:
        with torch.autocast(indices.device.type, enabled=False):
            codes = self.codebook()[indices[:, 0]]
            return codes.float().permute(0, 3, 1, 2).contiguous()
