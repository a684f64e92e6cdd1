"""Images from the prior: token grids sampled, decoded by the frozen tokenizer.

Generation FID compares decoded samples with the held-out split through the same code
as reconstruction FID: the evaluation protocol turns each batch of held-out images and
an equal batch of samples into its 8-bit images (``Protocol.measure``: ``clean``
lossless, ``vqct`` JPEG round trip), and :class:`~dcvq.metrics.fid.StreamingFID` with the
Inception that :class:`~dcvq.metrics.evaluator.Evaluator` loaded (its weight handling:
``eval.fid_weights``, the hub cache, ``eval.missing_weights``) accumulates both sets.
Samples are drawn from their own generator: the global RNG (training's dropout) is
untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dcvq.images import save_sample_grid
from dcvq.metrics.evaluator import Evaluator
from dcvq.metrics.fid import StreamingFID
from dcvq.prior.tokens import Tokenizer, capped_images


def sample_grids(
    model: nn.Module,
    n: int,
    batch_size: int,
    generator: torch.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
) -> Tensor:
    """``n`` token grids ``n x K x h x w`` (int64, on the model's device)."""
    was_training = model.training
    model.eval()
    try:
        parts = [
            model.sample(min(batch_size, n - i), generator, temperature, top_k)
            for i in range(0, n, batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(parts)


def write_samples(
    model: nn.Module,
    tokenizer: Tokenizer,
    n: int,
    path: str | Path,
    generator: torch.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
) -> Path:
    """``n`` decoded samples as a square-ish grid PNG at ``path``."""
    grids = sample_grids(model, n, n, generator, temperature, top_k)
    images = tokenizer.decode(grids)
    return save_sample_grid(images, path, nrow=math.ceil(math.sqrt(n)))


def generation_fid(
    model: nn.Module,
    tokenizer: Tokenizer,
    held_out: Iterable[Any],
    max_images: int | None,
    evaluator: Evaluator,
    generator: torch.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
) -> tuple[float | None, int]:
    """``(fid, n)``: FID between ``n`` held-out images (``ImageBatch``es; at most
    ``max_images``) and as many decoded samples, one sampled batch per held-out batch.
    ``fid`` is None with fewer than 2 images."""
    device = tokenizer.device
    fid = StreamingFID(evaluator.inception, device)
    n = 0
    for real in capped_images(held_out, max_images):
        grids = sample_grids(model, len(real), len(real), generator, temperature, top_k)
        fake = tokenizer.decode(grids)
        measured = evaluator.protocol.measure(real.to(device).float(), fake)
        fid.update(measured.real, measured.fake)
        n += len(real)
    return (fid.compute() if n >= 2 else None), n
