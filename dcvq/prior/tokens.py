"""The frozen tokenizer: a dcvq checkpoint that turns images into token grids and back.

Loaded once in eval mode with every parameter frozen; encoding and decoding run under
``torch.no_grad()`` (not ``inference_mode``: the transformer codebook caches its
generated table only for tensors with a version counter), so the dual quantizer's global
codebook is generated once and reused for every batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from dcvq.build import model_from_checkpoint
from dcvq.checkpoint import read_checkpoint
from dcvq.model import VQModel

# Stored tokens: codebooks of up to 2^31 codes, half the memory of int64.
TOKEN_DTYPE = torch.int32


def capped_images(batches: Iterable[Any], max_images: int | None) -> Iterator[Tensor]:
    """The image tensors of ``batches`` (``ImageBatch``es or tensors), at most
    ``max_images`` in all; stops before the loader decodes a batch it would not use."""
    n = 0
    for batch in batches:
        images = batch.images if hasattr(batch, "images") else batch
        if max_images is not None:
            images = images[: max_images - n]
        if len(images):
            n += len(images)
            yield images
        if max_images is not None and n >= max_images:
            return


@dataclass
class Tokenizer:
    model: VQModel
    path: Path
    step: int
    #: the checkpoint's training configuration (its dataset and eval settings)
    config: DictConfig

    @classmethod
    def load(cls, path: str | Path, device: torch.device) -> Tokenizer:
        """The tokenizer of the dcvq checkpoint at ``path``; errors name the path."""
        path = Path(path)
        state = read_checkpoint(path)  # names the path: missing, unreadable, not dcvq
        if state.get("kind") == "prior":
            raise RuntimeError(
                f"{path} is a prior checkpoint (python -m dcvq.prior), not a tokenizer: use a "
                "training run's checkpoints/last.pt"
            )
        config = OmegaConf.create(state.get("config") or "{}")
        missing = [k for k in ("model", "step") if k not in state]
        missing += [f"config.{k}" for k in ("model", "quantizer") if k not in config]
        if missing:
            raise RuntimeError(
                f"{path} is a dcvq checkpoint without {', '.join(missing)}: not a tokenizer "
                "checkpoint (use a training run's checkpoints/last.pt)"
            )
        model = model_from_checkpoint(state).to(device).eval().requires_grad_(False)
        return cls(model, path, int(state["step"]), config)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def codebook_names(self) -> tuple[str, ...]:
        return tuple(self.model.quantizer.codebook_names)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.model.quantizer.codebook_sizes)

    def describe(self) -> dict[str, Any]:
        return {"checkpoint": str(self.path), "step": self.step}

    @torch.no_grad()
    def encode(
        self, batches: Iterable[Any], max_images: int | None = None, progress: bool = False
    ) -> Tensor:
        """Every image of ``batches`` (``ImageBatch``es of a dcvq loader) -> ``N x K x h x w``
        token grids (int32, CPU), in the loader's order; at most ``max_images``."""
        from tqdm import tqdm

        parts = []
        bar = tqdm(total=max_images, unit="img", desc="tokens", disable=not progress)
        for images in capped_images(batches, max_images):
            _, indices = self.model.encode(images.to(self.device, non_blocking=True).float())
            parts.append(indices.to("cpu", TOKEN_DTYPE))
            bar.update(len(images))
        bar.close()
        if not parts:
            raise RuntimeError(f"no image to encode with the tokenizer {self.path}")
        return torch.cat(parts)

    @torch.no_grad()
    def decode(self, grids: Tensor) -> Tensor:
        """``B x K x h x w`` token grids -> images ``B x 3 x H x W`` (the decoder's raw,
        unclamped float output)."""
        return self.model.decode_indices(grids.to(self.device).long()).float()
