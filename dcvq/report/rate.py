"""Rate: the bits an image costs as tokens, so that quantizers are compared at equal
rate. A tokenizer at resolution R with ``len(model.ch_mult) - 1`` downsamplings emits
``(R / 2^d)^2`` token positions per image, and each position holds one index per
codebook, ``log2(N)`` bits for a codebook of N codes: a dual quantizer with two 128-code
codebooks spends 14 bits a position, as a single codebook of 16,384 codes does. Where a
token prior ran, its measured bits per token times the positions is the rate an entropy
coder would reach."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dcvq.report.collect import Run
from dcvq.report.rows import Configuration


def positions(run: Run) -> int | None:
    """Token positions per image: ``dataset.resolution`` halved (rounding down, as a
    stride-2 convolution does) once per downsampling (``len(model.ch_mult) - 1``), squared."""
    resolution, ch_mult = run.setting("dataset.resolution"), run.setting("model.ch_mult")
    if not isinstance(resolution, int) or ch_mult is None:
        return None
    try:
        downsamplings = len(ch_mult) - 1
    except TypeError:
        return None
    side = resolution
    for _ in range(downsamplings):
        side //= 2
    return side * side


def bits_per_position(run: Run) -> float | None:
    """Sum over the codebooks of eval.json (``codebooks.<name>.size``) of ``log2(size)``."""
    sizes = [cb.get("size") for cb in run.codebooks.values()]
    if not sizes or not all(isinstance(n, int) and n > 0 for n in sizes):
        return None
    return float(sum(math.log2(n) for n in sizes))


def bits_per_image(run: Run) -> float | None:
    """:func:`positions` x :func:`bits_per_position`: the fixed-length rate."""
    n, bits = positions(run), bits_per_position(run)
    return None if n is None or bits is None else n * bits


def prior_bits_per_image(run: Run) -> float | None:
    """The token prior's held-out bits per token (eval.json's ``prior`` section, all
    codebooks' tokens of a position summed) x :func:`positions`: the measured rate."""
    bits = ((run.results or {}).get("prior") or {}).get("bits_per_token")
    n = positions(run)
    if n is None or not isinstance(bits, int | float) or not math.isfinite(bits):
        return None
    return n * float(bits)


def config_bits(config: Configuration) -> float | None:
    """A row's :func:`bits_per_image` (its seeds share it)."""
    return bits_per_image(config.representative)


def interpolate(points: Sequence[tuple[float, float]], bits: float) -> float | None:
    """PSNR at ``bits`` on the curve through ``points`` ((bits, PSNR)), linear in
    ``log2(bits)``; None unless the curve brackets ``bits`` (no extrapolation)."""
    pts = sorted((math.log2(b), p) for b, p in points if b > 0)
    if len(pts) < 2 or not pts[0][0] <= math.log2(bits) <= pts[-1][0]:
        return None
    xs, ys = zip(*pts, strict=True)
    return float(np.interp(math.log2(bits), xs, ys))
