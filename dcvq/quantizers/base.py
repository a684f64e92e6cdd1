"""The interface every quantizer implements: start here to write your own.

A quantizer maps an encoder latent ``B x C x h x w`` (``C == dim``) to its quantized
version and to ``K`` index maps, one per codebook. Everything the training loop and the
metrics need (loss parts and code counts per codebook) travels in :class:`QuantizerOutput`,
so the loop never needs to know which quantizer it runs.

A new quantizer is one subclass of :class:`Quantizer` (or of one of dcvq's quantizers)
plus one YAML in ``conf/quantizer/`` naming it in ``_target_`` (README, "Your own
quantizer"). Its constructor's signature is its config: ``dcvq.config.validate`` checks
the YAML's keys against it and builds it on the meta device to read ``dim``.

The shared maths (VQ loss, straight-through, the rotation trick, code counts) is at the end
of this file; the nearest-code search is in :mod:`dcvq.quantizers.search`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
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
    """Base class: ``forward(z) -> QuantizerOutput``, ``decode_indices(idx) -> z_q``;
    optional: ``set_step``, ``compile_targets``, ``codebook_parameters`` (what the
    codebook is made of, for its own learning rate), ``codebook_channels``, and
    ``code_tables``/``init_tables`` (for ``kmeans_init`` and dead-code restarts).

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

    def codebook_parameters(self) -> list[nn.Parameter]:
        """The parameters that are the codebook: what the code vectors are made of (a code
        table, a transformer that regenerates one, the linear map of a frozen one), not
        the layers every latent passes through on its way to the search (Gumbel's logits
        convolution, FSQ's and LFQ's projections). The trainer can give them their own
        optimiser group (a learning-rate multiplier). Default: none, so a quantizer whose
        codebook is fixed or implicit (FSQ, LFQ) trains every parameter at the base rate."""
        return []

    def code_tables(self) -> dict[str, nn.Parameter]:
        """By codebook name, the ``N x d`` parameter whose rows are that codebook's codes:
        what a dead-code restart rewrites (``restart_unused_after``,
        :mod:`dcvq.quantizers.tables`). Default: none (no plain table)."""
        return {}

    def init_tables(self) -> dict[str, nn.Parameter]:
        """By codebook name, the ``N x d`` parameter ``kmeans_init`` writes with centroids
        of the codebook's latent rows. Default: :meth:`code_tables`; a generated codebook's
        is its generator's input (the dual quantizer's base table)."""
        return self.code_tables()

    def track_unused(self, restart_unused_after: int) -> None:
        """For constructors that offer ``restart_unused_after`` (steps a code may go unused
        before a restart; 0: never): checks it and, when on, keeps each code's count of
        steps unused in the ``unused_steps`` buffer (``K x N``, saved in checkpoints, so a
        resumed run restarts the same codes)."""
        if restart_unused_after < 0:
            raise ValueError(
                f"quantizer.restart_unused_after={restart_unused_after}: use 0 (off) or "
                "the number of steps a code may go unused before it is restarted"
            )
        self.restart_unused_after = restart_unused_after
        if restart_unused_after:
            shape = (len(self.codebook_sizes), max(self.codebook_sizes))
            self.register_buffer("unused_steps", torch.zeros(shape, dtype=torch.long))

    def codebook_channels(self) -> list[slice]:
        """Each codebook's channels of the latent, in ``codebook_names`` order: what
        :meth:`quantization_errors` compares. Default: the whole latent for a single
        codebook; with several, consecutive blocks as wide as the ``dim_keys`` attributes
        (the dual quantizer: ``global_dim`` then ``local_dim``)."""
        k = len(self.codebook_sizes)
        if k == 1:
            return [slice(0, self.dim)]
        if len(self.dim_keys) != k:
            raise NotImplementedError(
                f"{type(self).__name__} has {k} codebooks but dim_keys {self.dim_keys}: "
                "override codebook_channels()"
            )
        out, start = [], 0
        for key in self.dim_keys:
            width = int(getattr(self, key))
            out.append(slice(start, start + width))
            start += width
        return out

    @torch.no_grad()
    def quantization_errors(self, z: Tensor, z_q: Tensor) -> dict[str, Tensor]:
        """Per codebook, the mean over positions of the squared L2 distance between the
        latent ``z`` and its quantized ``z_q`` over the codebook's channels (fp32,
        detached): the evaluation's quantisation error, from which the tolerance of
        ``distinct_at_quantization`` comes (:mod:`dcvq.metrics.usage`). Empty for a
        quantizer whose codebooks' channels are unknown (:meth:`codebook_channels`)."""
        try:
            channels = self.codebook_channels()
        except NotImplementedError:
            return {}
        with torch.autocast(z.device.type, enabled=False):
            sq = (z.detach().float() - z_q.detach().float()).pow(2)
            return {
                name: sq[:, part].sum(1).mean()
                for name, part in zip(self.codebook_names, channels, strict=True)
            }


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


def rotation_trick(z: Tensor, q: Tensor) -> Tensor:
    """Fifty et al. 2024, "Restructuring vector quantization with the rotation trick":
    rows ``M x d``. Forward value ``q`` (to rounding, as :func:`straight_through`); the
    gradient reaches ``z`` through the rotation ``R`` and rescale ``|q| / |z|`` that map
    ``z`` onto ``q``, both held constant, instead of unchanged. ``R`` is the Householder
    form of the paper's section 4.2: ``R e = e - 2 (e.w) w + 2 (e.u) q^``, ``u = z/|z|``,
    ``q^ = q/|q|``, ``w = (u + q^)/|u + q^|``. The codebook gets no gradient through it
    (as through the straight-through estimator): its loss term trains it."""
    eps = torch.finfo(z.dtype).tiny
    with torch.no_grad():
        z_norm = z.norm(dim=1, keepdim=True).clamp_min(eps)
        q_norm = q.norm(dim=1, keepdim=True).clamp_min(eps)
        u, q_hat = z / z_norm, q / q_norm
        w = F.normalize(u + q_hat, dim=1)
        scale = q_norm / z_norm
    rotated = z - 2 * (z * w).sum(1, keepdim=True) * w + 2 * (z * u).sum(1, keepdim=True) * q_hat
    # the rotation's rounding (or a zero z, which no rotation maps anywhere) must not move
    # the forward value: it is q, as for every other estimator
    out = rotated * scale
    return out + (q - out).detach()


def code_counts(indices: Tensor, n: int) -> Tensor:
    return torch.bincount(indices.reshape(-1), minlength=n).detach()
