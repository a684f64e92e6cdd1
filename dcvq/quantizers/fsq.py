"""Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made
Simple"): the FSQ row.

A linear map takes each latent vector (``dim`` channels) to ``len(levels)`` channels; channel
``i`` is bounded (tanh) and rounded to one of ``levels[i]`` values, with the straight-through
gradient; a second linear map takes the code back to ``dim`` channels. The codebook is the
implicit grid of ``prod(levels)`` points: nothing in it is learned and nothing can die of
neglect, so there is no codebook loss. Indices are mixed-radix numbers, the first level the
fastest digit.

The bound, the rounding, the projections and the index convention are
``vector_quantize_pytorch.FSQ`` (lucidrains' transcription of the paper's code). Around it:
fp32 under any autocast (the library only turns CUDA's off), long indices, and in eval mode
the output decoded from the indices, so that ``decode_indices`` gives back exactly what the
forward returned.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dcvq.quantizers.base import Quantizer, QuantizerOutput, code_counts

#: the FSQ paper's levels for a target codebook size (its section 4.1: 2^8, 2^10, 2^12,
#: 2^14, 2^16), and dcvq's for the study's 128 codes and for 512, whose products round to
#: the target in log2 as the paper's do
LEVELS = {
    128: [5, 5, 5],
    256: [8, 6, 5],
    512: [8, 8, 8],
    1024: [8, 5, 5, 5],
    4096: [7, 5, 5, 5, 5],
    16384: [8, 8, 8, 6, 5],
    65536: [8, 8, 8, 5, 5, 5],
}


def levels_for(codebook_size: int, levels: list[int] | None) -> list[int]:
    """``levels`` checked against the row's nominal ``codebook_size``, or the table's
    levels for it. Levels fit a size when their product is the size, or rounds to it in
    log2 (the paper's 1000 codes are its 2^10 row)."""
    if levels is None:
        if codebook_size not in LEVELS:
            raise ValueError(
                f"codebook.size={codebook_size}: FSQ has no default levels for it (it has "
                f"them for {sorted(LEVELS)}): set codebook.size to one of those or "
                "quantizer.levels, e.g. quantizer.levels=[8,5,5,5]"
            )
        return list(LEVELS[codebook_size])
    levels = [int(x) for x in levels]
    if not levels or min(levels) < 3:
        raise ValueError(
            f"quantizer.levels={levels}: FSQ needs at least one channel and 3 or more levels "
            "per channel (the bound is symmetric: 2 levels would round everything to one)"
        )
    n = math.prod(levels)
    if n != codebook_size and 2 ** round(math.log2(n)) != codebook_size:
        raise ValueError(
            f"quantizer.levels={levels} make {n} codes, which is not codebook.size="
            f"{codebook_size} (nor rounds to it in log2): set codebook.size="
            f"{2 ** round(math.log2(n))} or other levels"
        )
    return levels


class FSQQuantizer(Quantizer):
    """FSQ behind the :class:`Quantizer` interface: ``codebook_sizes`` is the grid's
    ``prod(levels)`` (1000 for ``[8, 5, 5, 5]``), which the report's rate reads.

    ``codebook_size`` is the row's nominal size (``codebook.size``): without ``levels`` it
    picks the paper's levels for it (:data:`LEVELS`); with ``levels`` it must match them."""

    codebook_names = ("codebook",)

    def __init__(self, codebook_size: int, dim: int, levels: list[int] | None = None) -> None:
        super().__init__()
        from vector_quantize_pytorch import FSQ  # imported here: it takes a second to load

        self.levels = levels_for(codebook_size, levels)
        self.dim = dim
        self.fsq = FSQ(levels=self.levels, dim=dim)
        self.codebook_sizes = (int(self.fsq.codebook_size),)

    def forward(self, z: Tensor) -> QuantizerOutput:
        with torch.autocast(z.device.type, enabled=False):
            z_q, idx = self.fsq(z.float())
            idx = idx.long()
            if not self.training:
                # the codes of the indices themselves: the round trip is exact
                z_q = self.decode_indices(idx.unsqueeze(1))
            loss = z.new_zeros((), dtype=torch.float32)
            return QuantizerOutput(
                z_q=z_q,
                loss=loss,
                indices=idx.unsqueeze(1),
                losses={"codebook": loss},
                counts={"codebook": code_counts(idx, self.codebook_sizes[0])},
            )

    def decode_indices(self, indices: Tensor) -> Tensor:
        with torch.autocast(indices.device.type, enabled=False):
            return self.fsq.indices_to_codes(indices[:, 0]).float().contiguous()
