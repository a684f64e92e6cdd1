"""`python train.py` with no arguments: the paper's f16 T-128/S-128 model, full loss."""

import pytest

from dcvq.config import compose
from dcvq.trainer import Trainer


@pytest.mark.slow
def test_paper_configuration_takes_a_full_step(lpips_weights, tmp_path):
    cfg = compose(
        [
            "trainer.batch_size=1",
            "trainer.max_steps=1",
            "trainer.num_workers=0",
            "trainer.eval_batch_size=1",
            "trainer.grid_images=1",
            "trainer.progress=false",
            "eval.max_images=1",
            "loss.disc_start=0",
        ]
    )  # discriminator on from step 0
    assert cfg.model.ch == 128 and cfg.quantizer.transformer_layers == 6
    trainer = Trainer(cfg, tmp_path)
    results = trainer.fit()
    assert trainer.step == 1 and results["n_images"] == 1
    assert trainer.loss.perceptual is not None  # LPIPS from the (stand-in) hub cache
    assert all(p.grad is None for p in trainer.loss.discriminator.parameters())  # zeroed
    assert len(results["codebooks"]["global"]["counts"]) == 512
