"""Baselines in the same pipeline: +baseline=vqvae|gumbel|cvq (Table 1) and vqgan_taming."""

import copy

import pytest
import torch

from dcvq import load_model
from dcvq.config import CONF_DIR, compose
from dcvq.trainer import Trainer


def test_baselines_are_not_quantizer_options():
    baselines = {"vqvae", "gumbel", "cvq", "vqgan_taming", "fsq", "lfq", "simvq"}
    assert {p.stem for p in (CONF_DIR / "baseline").glob("*.yaml")} == baselines
    assert not baselines & {p.stem for p in (CONF_DIR / "quantizer").glob("*")}


@pytest.mark.parametrize(
    ("baseline", "target"),
    [("vqvae", "VectorQuantizer"), ("gumbel", "GumbelQuantizer"), ("cvq", "CVQQuantizer")],
)
def test_baseline_trains_and_round_trips(tiny_cfg, tmp_path, baseline, target):
    cfg = tiny_cfg(f"+baseline={baseline}", "codebook.size=32", quantizer=None)
    assert cfg.quantizer._target_.endswith(target)
    if baseline == "vqvae":
        assert cfg.loss.perceptual_weight == 0 and cfg.loss.disc_factor == 0
    trainer = Trainer(cfg, tmp_path)
    disc_before = copy.deepcopy(trainer.loss.discriminator.state_dict())
    results = trainer.fit()
    disc_after = trainer.loss.discriminator.state_dict()
    changed = {k for k, v in disc_after.items() if not torch.equal(v, disc_before[k])}
    if baseline == "vqvae":
        # disc_factor=0: the discriminator never runs (weights and BatchNorm statistics)
        assert changed == set()
    else:
        # From disc_start=2 of the 4 steps it trains: Adam moves every weight tensor.
        # (Not the last bias: the hinge loss's gradient for it is exactly zero while
        # every logit lies in (-1, 1).)
        weights = {n for n, _ in trainer.loss.discriminator.named_parameters() if "weight" in n}
        assert weights <= changed
    counts = results["codebooks"]["codebook"]["counts"]
    assert len(counts) == 32 and sum(counts) == results["n_images"] * 8 * 8
    model = load_model(tmp_path / "checkpoints" / "last.pt")
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z_q, indices = model.encode(x)
        assert indices.shape == (3, 1, 8, 8)
        # The indices give back z_q: the codes themselves, or for CVQ its straight-through
        # z + (q - z), elementwise one rounding per operation away from the codes:
        # |z_q - q| <= eps/2 (|q - z| + |z_q|) < eps (|q - z| + |q|). Then the same
        # input, the same image.
        z = model.quant_conv(model.encoder(x))
        codes = model.quantizer.decode_indices(indices)
        slack = torch.finfo(torch.float32).eps * ((codes - z).abs() + codes.abs())
        assert ((z_q - codes).abs() <= slack).all()
        assert torch.equal(model.decode_indices(indices), model.decode(codes))
        _, _, info = model(x)
    assert torch.equal(info["counts"]["codebook"], torch.bincount(indices.flatten(), minlength=32))


def test_baseline_codebook_size_defaults_to_1024_and_is_overridable():
    assert compose(["+baseline=cvq"]).codebook.size == 1024
    assert compose(["+baseline=cvq", "codebook.size=512"]).quantizer.codebook_size == 512


def test_vqgan_as_taming_trains_it_differs_from_the_ablation_row_in_its_recipe():
    """quantizer=vq is the paper's ablation row (the dual rows' loss convention);
    +baseline=vqgan_taming is taming's own: legacy beta placement, perceptual weight 1.0."""
    from omegaconf import OmegaConf

    from dcvq.config.diff import result_changes

    ablation = compose(["quantizer=vq"])
    taming = compose(["+baseline=vqgan_taming"])
    assert result_changes(OmegaConf.to_container(ablation, resolve=True), taming) == [
        "codebook.size: 512 -> 1024",  # as every baseline: the paper's baseline rows' size
        "loss.perceptual_weight: 1.25 -> 1.0",
        "quantizer.codebook_size: 512 -> 1024",
        "quantizer.legacy_beta: False -> True",
    ]
    assert compose(["+baseline=vqgan_taming", "codebook.size=256"]).quantizer.codebook_size == 256


def test_gumbel_temperature_follows_its_schedule_through_fit_and_resume(tiny_cfg, tmp_path):
    """The loop sets the quantizer's step before each step: every training forward uses
    the schedule's temperature of its step, in a resumed run too (not the first step's)."""
    from dcvq.quantizers.gumbel import temperature_at

    overrides = ["+baseline=gumbel", "codebook.size=32", "quantizer.anneal_steps=4",
                 "quantizer.temp_min=0.1", "trainer.max_steps=6",
                 "trainer.ckpt_every=3"]  # fmt: skip
    used: list[tuple[int, float]] = []

    def run(*extra: str) -> Trainer:
        trainer = Trainer(tiny_cfg(*overrides, *extra, quantizer=None), tmp_path)
        quantizer = trainer.model.quantizer

        def record(module, args):
            if module.training:  # evaluations take the noiseless argmax: no temperature
                used.append((trainer.step, module.temperature))

        quantizer.register_forward_pre_hook(record)
        trainer.fit()
        return trainer

    run("trainer.max_steps=3")
    run()  # resumes at step 3
    q = tiny_cfg(*overrides, quantizer=None).quantizer
    schedule = (q.temperature_schedule, q.temp_start, q.temp_min, q.anneal_steps)
    expected = [temperature_at(step, *schedule) for step in range(6)]
    assert used == [(step, pytest.approx(t)) for step, t in enumerate(expected)]
    assert expected[0] == 0.9 and expected[-2:] == [pytest.approx(0.1)] * 2  # anneals, then flat
