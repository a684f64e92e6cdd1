"""The Quantizer interface (dcvq/quantizers/base.py), for every quantizer."""

import pytest
import torch
from torch import nn

from dcvq.quantizers import (
    CVQQuantizer,
    DualCodebookQuantizer,
    GumbelQuantizer,
    Quantizer,
    VectorQuantizer,
)

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


def test_set_step_and_compile_targets_are_part_of_the_interface():
    """The trainer calls ``set_step`` on every quantizer and compiles what
    ``compile_targets`` names; the defaults are a no-op and nothing."""
    vq = QUANTIZERS["vq"]()
    vq.set_step(10)  # inherited no-op
    assert vq.compile_targets() == []
    dual = QUANTIZERS["dual"]()
    (target,) = dual.compile_targets()
    assert target is dual.global_codebook.transformer and isinstance(target, nn.Module)
    plain = DualCodebookQuantizer(16, 4, 4, global_transformer=False)
    assert plain.compile_targets() == []
    gumbel = QUANTIZERS["gumbel"]()
    gumbel.set_step(500_000)
    assert gumbel.temperature == pytest.approx(gumbel.temperature_for(500_000))
    assert gumbel.temperature < gumbel.temperature_for(0)
    assert all(isinstance(q(), Quantizer) for q in QUANTIZERS.values())
