"""Lookup-free quantization (Yu et al. 2023, "Language Model Beats Diffusion: Tokenizer is
Key to Visual Generation", MAGVIT-v2): the LFQ row.

A linear map takes each latent vector (``dim`` channels) to ``bits = log2(N)`` channels;
each is quantized to its sign (``-1``, or ``+1`` where it is positive), with the
straight-through gradient; a second linear map takes the code back to ``dim`` channels.
The codebook is the implicit set of ``N = 2^bits`` sign patterns, the index the signs read
as a binary number (``+1`` is 1, the first channel the most significant bit). Two terms
train it: an entropy term (the mean over positions of the entropy of a soft assignment to
the codes, minus ``diversity_gamma`` times the entropy of its batch average: confident
codes, all of them used) and a commitment term pulling the projected latent to its signs.

The same computation as ``vector_quantize_pytorch.LFQ`` (its soft assignment
``softmax(200 x.c)``, its ``1e-5`` floor inside the log; ``tests/quantizers/test_lfq.py``
compares the two), written here because the library's distributed batch average is lost
(version 1.34: it discards the result of the all-reduce and divides the rank's own
average by the number of ranks), and to keep fp32 under any autocast and long indices.

Distributed training: the batch average of the soft assignments is summed over the ranks
(with the batch sizes) through an all-reduce that carries gradients, so that two ranks at
batch b compute the loss of one process at batch 2b. It runs in every training-mode
forward: all ranks must run the same number of them (eval mode communicates nothing).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from dcvq.quantizers.base import Quantizer, QuantizerOutput, code_counts, straight_through
from dcvq.quantizers.vq import from_rows, to_rows

#: the soft assignment's inverse temperature (the library's default) and the floor of the
#: entropies' log
INV_TEMPERATURE = 100.0
LOG_FLOOR = 1e-5


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: each rank's input
    then receives the gradient of every rank's loss, which DDP's averaging turns into the
    gradient of one process over the union of the batches."""

    @staticmethod
    def forward(ctx: Any, t: Tensor) -> Tensor:
        out = t.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def entropy(p: Tensor) -> Tensor:
    return -(p * p.clamp(min=LOG_FLOOR).log()).sum(-1)


class LFQQuantizer(Quantizer):
    """LFQ behind the :class:`Quantizer` interface. Defaults: MAGVIT-v2's entropy weight
    0.1 and diversity weight 1, and the commitment weight 0.25 of VQ."""

    codebook_names = ("codebook",)

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        entropy_weight: float = 0.1,
        diversity_gamma: float = 1.0,
        commitment_weight: float = 0.25,
    ) -> None:
        super().__init__()
        bits = round(math.log2(codebook_size)) if codebook_size > 1 else 0
        if codebook_size < 2 or 2**bits != codebook_size:
            raise ValueError(
                f"codebook.size={codebook_size}: LFQ's codebook is 2^bits sign patterns, so "
                f"its size must be a power of two (e.g. codebook.size={2 ** max(bits, 1)})"
            )
        self.dim = dim
        self.bits = bits
        self.codebook_sizes = (codebook_size,)
        self.entropy_weight = entropy_weight
        self.diversity_gamma = diversity_gamma
        self.commitment_weight = commitment_weight
        self.project_in = nn.Linear(dim, bits)
        self.project_out = nn.Linear(bits, dim)
        # constants of the size, not state: rebuilt, never checkpointed
        place = 2 ** torch.arange(bits - 1, -1, -1)
        self.register_buffer("place", place, persistent=False)
        self.register_buffer(
            "signs", self.index_signs(torch.arange(codebook_size)), persistent=False
        )

    def index_signs(self, idx: Tensor) -> Tensor:
        """``... -> ... x bits`` of ``+-1``: the index's binary digits, first the most
        significant."""
        return ((idx.unsqueeze(-1) & self.place) != 0).float() * 2 - 1

    def forward(self, z: Tensor) -> QuantizerOutput:
        with torch.autocast(z.device.type, enabled=False):
            z = z.float()
            b, _, h, w = z.shape
            x = self.project_in(to_rows(z))
            positive = x > 0
            idx = (positive.long() * self.place).sum(1)
            n = self.codebook_sizes[0]
            counts = code_counts(idx, n)
            idx = idx.view(b, 1, h, w)
            if not self.training:
                # the codes of the indices themselves: the round trip is exact
                loss = z.new_zeros(())
                return QuantizerOutput(
                    z_q=self.decode_indices(idx),
                    loss=loss,
                    indices=idx,
                    losses={"codebook": loss},
                    counts={"codebook": counts},
                )
            q = positive.float() * 2 - 1
            loss = self.loss_terms(x, q)
            z_q = from_rows(self.project_out(straight_through(x, q)), b, h, w)
            return QuantizerOutput(
                z_q=z_q,
                loss=loss,
                indices=idx,
                losses={"codebook": loss.detach()},
                counts={"codebook": counts},
            )

    def loss_terms(self, x: Tensor, q: Tensor) -> Tensor:
        """``entropy_weight (mean entropy - diversity_gamma batch entropy) +
        commitment_weight |x - sg[q]|^2`` of the projected rows ``x`` and their signs."""
        # softmax(-|x - c|^2 * T) up to a constant per row: |c|^2 = bits for every code
        prob = F.softmax(2 * INV_TEMPERATURE * x @ self.signs.t(), dim=1)
        per_position = entropy(prob).mean()
        total = torch.cat([prob.sum(0), prob.new_tensor([prob.shape[0]])])
        if _distributed():
            total = _SumOverRanks.apply(total)
        batch = entropy(total[:-1] / total[-1])
        commit = F.mse_loss(x, q.detach())
        return (
            self.entropy_weight * (per_position - self.diversity_gamma * batch)
            + self.commitment_weight * commit
        )

    def decode_indices(self, indices: Tensor) -> Tensor:
        with torch.autocast(indices.device.type, enabled=False):
            codes = self.project_out(self.index_signs(indices[:, 0]))  # B x h x w x dim
            return codes.permute(0, 3, 1, 2).contiguous()
