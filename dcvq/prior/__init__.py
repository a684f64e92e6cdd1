"""Token prior: how well an autoregressive generator models a tokenizer's tokens.

``python -m dcvq.prior checkpoint=PATH [prior=tiny|gpt_b] [dataset=...]`` (or
:func:`run_prior`) encodes the training split and the held-out split with the frozen
tokenizer of a dcvq checkpoint, trains a small GPT on the training split's token grids,
and writes to its run dir ``prior.json`` (held-out bits per token, generation FID, ...),
``samples.png`` (images decoded from sampled tokens) and ``checkpoints/prior.pt``.
Both splits are encoded once, with the evaluation's preprocessing (centre crops or
squash, no flips): one fixed token grid per image.

Factorisation (exact, fully autoregressive). A tokenizer with K codebooks (the dual
quantizers: K = 2, global then local; the others: K = 1) gives each image an
``h x w`` grid with K tokens per position. The prior reads one sequence of
``L = h * w * K`` tokens: positions in raster order (row by row), and at each position
its K tokens in the quantizer's codebook order, so token ``t`` is codebook ``t % K`` of
position ``t // K``::

    p(x) = prod_{p < h*w} prod_{k < K} p(x[p, k] | x[<p, :], x[p, <k])

The local token of a position is predicted knowing its global token; the global token
knowing everything at the positions before. Each codebook has its own input embedding
table and its own output head (their vocabularies differ in meaning, and in size for
quantizers of your own); position embeddings cover the ``L`` slots, so they also tell
which codebook a slot holds. The likelihood is exact: no independence between the K
tokens of a position is assumed, and the per-codebook terms add up to the whole.

``bits_per_token`` in ``prior.json`` is per grid position with the K codebooks' tokens
summed (``-log2 p(x[p, :] | x[<p, :])``, averaged over the held-out positions);
``bits_per_token_<name>`` (``global``/``local``, or ``codebook``) is one codebook's
share, so the codebook columns add up to ``bits_per_token``. ``uniform_bits_per_token``
(``sum_k log2 N_k``) is what a prior that learned nothing pays.

Modules: ``model`` (the transformer), ``tokens`` (the frozen tokenizer), ``train``
(AdamW loop, checkpoints, exact resume, DDP), ``likelihood`` (bits per token),
``generation`` (sampling, ``samples.png``, generation FID), ``config`` (the ``prior``
node), ``stage`` (:func:`run_prior`), ``__main__`` (the command line).
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_prior"]


def __getattr__(name: str) -> Any:
    # Lazy: `import dcvq.prior.model` (the benchmark) must not import the whole stage
    # (evaluation, torch-fidelity, the data sets) through this package.
    if name == "run_prior":
        from dcvq.prior.stage import run_prior

        return run_prior
    raise AttributeError(f"module 'dcvq.prior' has no attribute {name!r}")
