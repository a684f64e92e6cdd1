"""The Quantizer interface (dcvq/quantizers/base.py), for every quantizer."""

import pytest
import torch
from torch import nn

from dcvq.quantizers import (
    CVQQuantizer,
    DualCodebookQuantizer,
    FSQQuantizer,
    GumbelQuantizer,
    LFQQuantizer,
    Quantizer,
    SimVQQuantizer,
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
    "vq_rotation": lambda: VectorQuantizer(16, 8, rotation_trick=True),
    "fsq": lambda: FSQQuantizer(128, 8),  # levels [5, 5, 5]: 125 codes
    "lfq": lambda: LFQQuantizer(16, 8),
    "simvq": lambda: SimVQQuantizer(16, 8),
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


def _codebook_of(name: str, q: Quantizer) -> list[nn.Parameter]:
    """What each quantizer's codebook is made of (``codebook_parameters``' contract)."""
    if name in ("vq", "vq_rotation", "cvq"):
        return [q.codebook.embedding.weight]
    if name == "gumbel":
        return [q.embed.weight]  # not its logits convolution: the encoder's head
    if name == "simvq":
        return [q.proj.weight, q.proj.bias]  # the frozen table is a buffer
    if name == "dual":  # the global codebook with its transformer, and the local one
        return [*q.global_codebook.parameters(), *q.local_codebook.parameters()]
    return []  # fsq, lfq: an implicit grid; their projections are the latent's path


@pytest.mark.parametrize("name", QUANTIZERS)
def test_codebook_parameters_are_the_codebook(name):
    q = QUANTIZERS[name]()
    if name == "dual" and type(q).codebook_parameters is Quantizer.codebook_parameters:
        pytest.skip("dual.py does not declare its codebook parameters yet")
    got = q.codebook_parameters()
    assert [id(p) for p in got] == [id(p) for p in _codebook_of(name, q)]
    assert {id(p) for p in got} <= {id(p) for p in q.parameters()}


@pytest.mark.parametrize("name", QUANTIZERS)
def test_quantization_errors_are_each_codebooks_squared_distance(name):
    """Per codebook, the mean over positions of |z - code|^2 over its own channels (the
    dual quantizer: global_dim, then local_dim), from the forward's own output."""
    torch.manual_seed(0)
    q = QUANTIZERS[name]().eval()
    z = torch.randn(3, 8, 5, 5)
    with torch.no_grad():
        out = q(z)
        errors = q.quantization_errors(z, out.z_q)
        codes = q.decode_indices(out.indices)
    assert list(errors) == list(q.codebook_names)
    widths = [4, 4] if name == "dual" else [8]
    for (codebook, err), part in zip(errors.items(), z.split(widths, 1), strict=True):
        start = 0 if codebook != "local" else 4
        want = (part - codes[:, start : start + part.shape[1]]).pow(2).sum(1).mean()
        torch.testing.assert_close(err, want)
        assert not err.requires_grad and err.dtype == torch.float32


def test_quantization_errors_of_codebooks_whose_channels_are_unknown_are_left_out():
    """Two codebooks, one ``dim`` key: which channels are whose is the quantizer's to say
    (``codebook_channels``); until it does, no errors, and training is unaffected."""

    class Two(VectorQuantizer):
        codebook_names = ("a", "b")

        def __init__(self) -> None:
            super().__init__(4, 2)
            self.codebook_sizes = (4, 4)

    z = torch.randn(1, 2, 2, 2)
    assert Two().quantization_errors(z, z) == {}
    with pytest.raises(NotImplementedError, match="override codebook_channels"):
        Two().codebook_channels()
