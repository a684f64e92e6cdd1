"""Codebooks: a plain learnable table, and the transformer-regenerated one.

Both are called with no argument and return the ``N x d`` matrix used for the
nearest-neighbour lookup, so a quantizer does not care which kind it holds.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Codebook(nn.Module):
    """``nn.Embedding(N, d)`` with taming's uniform ``[-1/N, 1/N]`` init ("S" codebook)."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / size, 1.0 / size)

    def forward(self) -> Tensor:
        return self.embedding.weight


class TransformerCodebook(nn.Module):
    """Global codebook of the paper ("T"): the code table is regenerated each forward.

    A learnable base table (``randn`` init, as in the release) goes through a
    ``TransformerEncoder`` as ONE sequence of N tokens with no positional encoding, so
    every output code depends on every base code and all codes move each step.

    In eval mode with autograd off, the generated table is deterministic; it is cached
    and recomputed only when a parameter changes (optimizer step, ``load_state_dict``,
    ``.to()``), detected through the parameters' version counters and storage. Writes
    that bypass the version counter are not seen: fused optimizers
    (``Adam(fused=True)``) and ``.data`` assignments. After one of those in eval mode,
    call ``clear_cache()`` (``train()``/``eval()`` clear it too; the Trainer does).
    Inside ``torch.compile`` there is no cache: a graph cannot keep one keyed on the
    weights' versions, so a compiled call regenerates the table and follows every change.
    """

    def __init__(
        self,
        size: int,
        dim: int,
        num_layers: int = 6,
        num_heads: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"quantizer.transformer_heads={num_heads} must divide quantizer.global_dim="
                f"{dim} (the width of the transformer's global codebook)"
            )
        self.base = nn.Parameter(torch.randn(size, dim))
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=num_heads,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            batch_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            layer, num_layers=num_layers, enable_nested_tensor=False
        )
        self._cache: Tensor | None = None
        self._cache_key: tuple | None = None

    def clear_cache(self) -> None:
        """Drop the eval-mode table: the next no-grad eval call regenerates it."""
        self._cache, self._cache_key = None, None

    def _param_key(self) -> tuple | None:
        # A hand-rolled walk: 4x cheaper than ``self.parameters()``, which is most of the
        # cost of an eval call at small batches. Storage pointers catch ``.to()`` and
        # replaced parameters; version counters catch in-place updates.
        key, stack = [], [self]
        while stack:
            module = stack.pop()
            for p in module._parameters.values():
                if p is not None:
                    try:
                        key.append((p.data_ptr(), p._version))
                    except RuntimeError:  # an inference tensor has no version: no cache
                        return None
            stack.extend(module._modules.values())
        return tuple(key)

    def generate(self) -> Tensor:
        """Run the transformer over the base table (no caching)."""
        return self.transformer(self.base.unsqueeze(0)).squeeze(0)

    def forward(self) -> Tensor:
        if self.training or torch.is_grad_enabled() or torch.compiler.is_compiling():
            return self.generate()
        key = self._param_key()
        if key is None:
            return self.generate()
        if self._cache is None or key != self._cache_key:
            self._cache = self.generate()
            self._cache_key = key
        return self._cache

    def train(self, mode: bool = True) -> TransformerCodebook:
        self.clear_cache()
        return super().train(mode)
