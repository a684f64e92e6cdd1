"""Fixtures of the training loop's tests."""

from __future__ import annotations

import itertools

import pytest

from dcvq.trainer import Trainer


@pytest.fixture
def fixed_batch_losses(tiny_cfg, tmp_path):
    """``fixed_batch_losses(*overrides, steps=6) -> (trainer, losses)``: the total loss of
    each of ``steps`` training steps on one fixed batch (two evaluation images) from the
    seed's initial weights; no dropout and no discriminator, so that two runs differ only
    by their rounding (precision, device) and the loss falls when the steps learn."""
    runs = itertools.count()

    def run(*overrides: str, steps: int = 6) -> tuple[Trainer, list[float]]:
        cfg = tiny_cfg("loss.disc_start=1000", "quantizer.transformer_dropout=0", *overrides)
        trainer = Trainer(cfg, tmp_path / f"fixed_batch_{next(runs)}")
        batch = trainer.grid_images(trainer.loaders()[1].dataset)[:2]
        return trainer, [trainer.train_step([batch])["total"] for _ in range(steps)]

    return run
