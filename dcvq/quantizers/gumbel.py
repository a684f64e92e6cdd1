"""Gumbel-softmax quantization: taming's ``GumbelQuantize`` (the Gumbel-VQ baseline row).

A 1x1 conv maps the latent to ``N`` logits per position; a Gumbel-softmax sample over the
codes mixes the rows of an embedding table; a KL term pulls the code posterior towards the
uniform prior. The relaxation temperature is annealed with the training step, which the
trainer passes in through :meth:`GumbelQuantizer.set_step` before every step.

Deliberate differences from taming:

- Eval mode uses the noiseless argmax of the logits (taming still adds Gumbel noise with
  ``hard=True`` in eval), so encoding an image is deterministic and the index round trip
  is exact.
- Taming's ``GumbelQuantize`` takes the encoder channels and the embedding width
  separately; here both are ``dim`` because ``quant_conv`` already maps to ``embed_dim``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dcvq.quantizers.base import Quantizer, QuantizerOutput, code_counts

SCHEDULES = ("cosine", "exponential", "constant")


def temperature_at(
    step: int, schedule: str, temp_start: float, temp_min: float, anneal_steps: int
) -> float:
    """Relaxation temperature after ``step`` optimizer steps.

    ``cosine`` is taming's ``LambdaWarmUpCosineScheduler`` without warm-up (the released
    GumbelVQ configs use ``warm_up_steps: 0`` and ``lr_start == lr_max``): half a cosine
    from ``temp_start`` to ``temp_min`` over ``anneal_steps``, then flat. ``exponential``
    decays geometrically from ``temp_start`` and reaches ``temp_min`` at ``anneal_steps``.
    """
    if schedule == "constant" or anneal_steps <= 0:
        return float(temp_start)
    t = min(max(step, 0) / anneal_steps, 1.0)
    if schedule == "cosine":
        return temp_min + 0.5 * (temp_start - temp_min) * (1.0 + math.cos(t * math.pi))
    if schedule == "exponential":
        return temp_start * (temp_min / temp_start) ** t
    raise ValueError(f"quantizer.temperature_schedule must be one of {SCHEDULES}, got {schedule!r}")


class GumbelQuantizer(Quantizer):
    """Taming's Gumbel quantizer behind the :class:`Quantizer` interface.

    Defaults follow taming: ``straight_through=True`` (``GumbelQuantize``'s default, which
    ``GumbelVQ`` does not override: hard one-hot forward, soft gradient), a cosine
    temperature schedule from 0.9 to 1e-6 over 1,000,001 steps (the released
    ``vqgan_gumbel_f8`` config). ``kl_weight`` defaults to 5e-4, the value the Table 1
    baseline reports (taming's released f8 model used 1e-8).
    """

    codebook_names = ("codebook",)

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        kl_weight: float = 5e-4,
        straight_through: bool = True,
        temperature_schedule: str = "cosine",
        temp_start: float = 0.9,
        temp_min: float = 1e-6,
        anneal_steps: int = 1_000_001,
    ) -> None:
        super().__init__()
        if temperature_schedule not in SCHEDULES:
            raise ValueError(
                f"quantizer.temperature_schedule must be one of {SCHEDULES}, "
                f"got {temperature_schedule!r}"
            )
        if temp_start <= 0 or temp_min <= 0:
            raise ValueError(
                f"quantizer.temp_start={temp_start}, quantizer.temp_min={temp_min}: Gumbel "
                "temperatures must be positive"
            )
        self.dim = dim
        self.codebook_sizes = (codebook_size,)
        self.kl_weight = kl_weight
        self.straight_through = straight_through
        self.temperature_schedule = temperature_schedule
        self.temp_start, self.temp_min, self.anneal_steps = temp_start, temp_min, anneal_steps
        self.proj = nn.Conv2d(dim, codebook_size, 1)
        # taming keeps nn.Embedding's default N(0, 1) init for the Gumbel table
        self.embed = nn.Embedding(codebook_size, dim)
        self.temperature = self.temperature_for(0)

    def temperature_for(self, step: int) -> float:
        return temperature_at(
            step, self.temperature_schedule, self.temp_start, self.temp_min, self.anneal_steps
        )

    def codebook_parameters(self) -> list[nn.Parameter]:
        # the embedding table; the logits convolution is the encoder's head
        return [self.embed.weight]

    def set_step(self, step: int) -> None:
        """Anneal the temperature to the value of optimizer step ``step`` (call before it)."""
        self.temperature = self.temperature_for(step)

    def kl_to_uniform(self, logits: Tensor) -> Tensor:
        """``kl_weight * mean_positions KL(softmax(logits) || uniform)`` (taming's form,
        including its ``1e-10`` inside the log)."""
        qy = F.softmax(logits, dim=1)
        n = logits.shape[1]
        return self.kl_weight * torch.sum(qy * torch.log(qy * n + 1e-10), dim=1).mean()

    def forward(self, z: Tensor) -> QuantizerOutput:
        # fp32 throughout: the KL's log and the softmax over N codes are unstable in bf16.
        with torch.autocast(z.device.type, enabled=False):
            logits = self.proj(z.float())
            if self.training:
                one_hot = F.gumbel_softmax(
                    logits, tau=self.temperature, dim=1, hard=self.straight_through
                )
                z_q = torch.einsum("bnhw,nd->bdhw", one_hot, self.embed.weight)
                # the code actually sampled (taming's indices), not the noiseless argmax
                idx = one_hot.argmax(dim=1)
            else:
                idx = logits.argmax(dim=1)
                z_q = self.embed.weight[idx].permute(0, 3, 1, 2).contiguous()
            loss = self.kl_to_uniform(logits)
            return QuantizerOutput(
                z_q=z_q,
                loss=loss,
                indices=idx.unsqueeze(1),
                losses={"codebook": loss.detach()},
                counts={"codebook": code_counts(idx, self.codebook_sizes[0])},
            )

    def decode_indices(self, indices: Tensor) -> Tensor:
        return self.embed.weight[indices[:, 0]].float().permute(0, 3, 1, 2).contiguous()
