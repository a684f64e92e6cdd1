"""The Quantizer interface (dcvq/quantizers/base.py), for every quantizer."""

import pytest
import torch
from torch import nn

from dcvq.quantizers import (
    CVQQuantizer,
    DualCodebookQuantizer,
    GumbelQuantizer,
    VectorQuantizer,
)
from dcvq.quantizers.gumbel import temperature_at
from dcvq.trainer import train
from dcvq.trainer.loop import Trainer

QUANTIZERS = {
    "vq": lambda: VectorQuantizer(16, 8),
    "dual": lambda: DualCodebookQuantizer(
        16, 4, 4, transformer_layers=1, transformer_heads=2, transformer_ff=16
    ),
    "gumbel": lambda: GumbelQuantizer(16, 8),
    "cvq": lambda: CVQQuantizer(16, 8),
}


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name", QUANTIZERS)
def test_counts_are_the_histogram_of_each_codebooks_indices(name, train):
    """The interface contract the metrics rely on, for every quantizer."""
    torch.manual_seed(0)
    q = QUANTIZERS[name]().train(train)
    out = q(torch.randn(3, 8, 5, 5))
    assert list(out.counts) == list(q.codebook_names)
    for k, (codebook, n) in enumerate(zip(q.codebook_names, q.codebook_sizes, strict=True)):
        c = out.counts[codebook]
        assert c.shape == (n,) and int(c.sum()) == 3 * 5 * 5
        assert torch.equal(c, torch.bincount(out.indices[:, k].flatten(), minlength=n))


def test_the_trainer_anneals_by_set_step_before_every_step_and_after_resume(
    tiny_cfg, tmp_path, gumbel_temperatures
):
    """The trainer calls ``set_step(step)`` before every training step, the resumed
    run from its checkpoint's step: Gumbel's training forwards use the schedule's
    temperature at each step."""
    keys = ["codebook.size=32", "+baseline=gumbel", "quantizer.anneal_steps=5"]
    for steps in (2, 4):  # the second run resumes at step 2
        train(tiny_cfg(*keys, f"trainer.max_steps={steps}", quantizer=None), tmp_path)
    schedule = [temperature_at(step, "cosine", 0.9, 1e-6, 5) for step in range(4)]
    assert len(set(schedule)) == 4 and gumbel_temperatures == schedule


def test_trainer_compile_codebook_compiles_exactly_the_compile_targets(
    tiny_cfg, tmp_path, monkeypatch
):
    compiled: list[nn.Module] = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, *a, **kw: compiled.append(self))
    trainer = Trainer(tiny_cfg("trainer.compile=codebook"), tmp_path)
    targets = trainer.model.quantizer.compile_targets()
    assert targets == [trainer.model.quantizer.global_codebook.transformer]
    assert len(compiled) == 1 and compiled[0] is targets[0]
    # the default: nothing to compile, and the setting is refused by name
    assert VectorQuantizer(16, 8).compile_targets() == []
    with pytest.raises(ValueError, match="trainer.compile=codebook: this quantizer has no"):
        Trainer(tiny_cfg("trainer.compile=codebook", quantizer="vq"), tmp_path / "vq")
    assert len(compiled) == 1
