"""The interface every quantizer implements: start here to write your own.

A quantizer maps an encoder latent ``B x C x h x w`` (``C == dim``) to its quantized
version and to ``K`` index maps, one per codebook. Everything the training loop and the
metrics need (loss parts and code counts per codebook) travels in :class:`QuantizerOutput`,
so the loop never needs to know which quantizer it runs.

A new quantizer is one subclass of :class:`Quantizer` (or of one of dcvq's quantizers)
plus one YAML in ``conf/quantizer/`` naming it in ``_target_`` (README, "Your own
quantizer"). Its constructor's signature is its config: ``dcvq.config.validate`` checks
the YAML's keys against it and builds it on the meta device to read ``dim``.

The shared maths (VQ loss, straight-through, code counts) is at the end of this file; the
nearest-code search is in :mod:`dcvq.quantizers.search`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn


@dataclass
class QuantizerOutput:
    """What a quantizer returns for one batch.

    ``z_q``: the quantized latent (``B x dim x h x w``), with the gradient path the
    encoder trains through (e.g. straight-through); ``loss``: the quantizer's own training
    loss (scaled by ``loss.codebook_weight``); ``indices``: ``B x K x h x w`` LongTensor.
    ``losses`` and ``counts`` are keyed by codebook name (``codebook_names``);
    ``counts[name]`` is the batch's histogram of code indices (length ``N``, detached).
    """

    z_q: Tensor
    loss: Tensor
    indices: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    counts: dict[str, Tensor] = field(default_factory=dict)


class Quantizer(nn.Module, ABC):
    """Base class: ``forward(z) -> QuantizerOutput``, ``decode_indices(idx) -> z_q``.

    The constructor sets ``dim`` and ``codebook_sizes`` (instance attributes);
    ``codebook_names`` is usually a class attribute. Constructor arguments that the YAML
    leaves to the run are interpolated there, e.g. ``codebook_size: ${codebook.size}``,
    ``dim: ${model.embed_dim}``; a ``ValueError`` naming ``quantizer.<key>`` is how a
    constructor rejects a bad value (validation reports it before anything is built).
    """

    #: one name per codebook, in the order of the ``K`` axis of the indices
    codebook_names: tuple[str, ...]
    #: number of codes in each codebook, same order
    codebook_sizes: tuple[int, ...]
    #: channels of the latent this quantizer accepts (must equal ``model.embed_dim``)
    dim: int
    #: the constructor arguments whose sum is ``dim``: validation names them when ``dim``
    #: differs from ``model.embed_dim``
    dim_keys: ClassVar[tuple[str, ...]] = ("dim",)

    @abstractmethod
    def forward(self, z: Tensor) -> QuantizerOutput: ...

    @abstractmethod
    def decode_indices(self, indices: Tensor) -> Tensor:
        """``B x K x h x w`` LongTensor -> quantized latent ``B x C x h x w``."""

    def set_step(self, step: int) -> None:
        """Called by the trainer before every training step with the number of optimizer
        steps done (a resumed run continues from its step): for schedules such as Gumbel's
        temperature. Default: nothing."""

    def compile_targets(self) -> list[nn.Module]:
        """The submodules ``trainer.compile=codebook`` compiles in place (a fixed sequence
        of small kernels worth fusing). Default: none, and that setting is refused."""
        return []


def commitment_loss(z: Tensor, q: Tensor, beta: float, legacy: bool) -> Tensor:
    """VQ-VAE codebook + commitment loss.

    ``legacy=False`` (the Dual Codebook release): ``|sg[z]-q|^2 + beta |z-sg[q]|^2``.
    ``legacy=True`` (taming's VectorQuantizer2 default): beta scales the other term.
    """
    codebook_term = torch.mean((q - z.detach()) ** 2)
    commit_term = torch.mean((q.detach() - z) ** 2)
    if legacy:
        return commit_term + beta * codebook_term
    return codebook_term + beta * commit_term


def straight_through(z: Tensor, q: Tensor) -> Tensor:
    """Forward value ``q``, gradient passed to ``z`` unchanged."""
    return z + (q - z).detach()


def code_counts(indices: Tensor, n: int) -> Tensor:
    return torch.bincount(indices.reshape(-1), minlength=n).detach()
