"""Bits per token of a prior on held-out token grids: its exact log-likelihood.

``bits_per_token`` is per position of the token grid with the K codebooks' tokens
summed (``-log2 p(position's K tokens | everything before)``, averaged over positions
and images); ``bits_per_token_<name>`` is one codebook's share of it. A uniform guess
costs ``log2 N`` bits per codebook.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dcvq.prior.model import grids_to_sequence


@torch.no_grad()
def bits_per_token(
    model: nn.Module,
    grids: Tensor,
    names: Sequence[str],
    batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """``bits_per_token`` and ``bits_per_token_<name>`` of ``model`` (eval mode, fp32) on
    ``N x K x h x w`` token grids, summed in float64 over every token."""
    was_training = model.training
    model.eval()
    total = torch.zeros(len(names), dtype=torch.float64)
    try:
        for chunk in grids.split(batch_size):
            seq = grids_to_sequence(chunk).to(device, torch.long)
            total += model(seq).double().sum((0, 1)).cpu()
    finally:
        model.train(was_training)
    positions = grids.shape[0] * grids.shape[2] * grids.shape[3]
    bits = (total / positions / math.log(2)).tolist()
    return {"bits_per_token": sum(bits)} | {
        f"bits_per_token_{name}": b for name, b in zip(names, bits, strict=True)
    }


def uniform_bits(sizes: Sequence[int]) -> float:
    """Bits per position of a prior that knows nothing: ``sum_k log2 N_k``."""
    return sum(math.log2(n) for n in sizes)
