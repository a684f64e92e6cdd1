"""`python train.py` with no arguments: the paper's f16 T-128/S-128 model, full loss."""

import copy

import pytest
import torch

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
            "trainer.device=cpu",  # the same fp32 path on every machine, GPU or not
        ]
    )  # discriminator on from step 0
    assert cfg.model.ch == 128 and cfg.quantizer.transformer_layers == 6
    trainer = Trainer(cfg, tmp_path)
    disc_before = copy.deepcopy(trainer.loss.discriminator.state_dict())
    results = trainer.fit()
    assert trainer.step == 1 and results["n_images"] == 1
    assert trainer.loss.perceptual is not None  # LPIPS from the (stand-in) hub cache
    # The discriminator took its step: Adam's first step moves every weight by ~lr (not
    # the last bias, whose hinge-loss gradient is 0 while every logit is in (-1, 1)).
    disc_after = trainer.loss.discriminator.state_dict()
    for name, _ in trainer.loss.discriminator.named_parameters():
        if "weight" in name:
            assert not torch.equal(disc_after[name], disc_before[name]), name
    assert len(results["codebooks"]["global"]["counts"]) == 512
