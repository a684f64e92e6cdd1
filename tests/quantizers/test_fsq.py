"""FSQQuantizer: levels, the implicit grid, indices, round trip, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from dcvq.metrics.usage import CodebookUsage, code_vectors
from dcvq.quantizers.fsq import LEVELS, FSQQuantizer, levels_for


def _quantizer(size: int = 128, dim: int = 8, **kw) -> FSQQuantizer:
    torch.manual_seed(0)
    return FSQQuantizer(size, dim, **kw)


def test_levels_for_each_size_round_to_it_and_bad_ones_name_the_fix():
    for size, levels in LEVELS.items():
        assert 2 ** round(math.log2(math.prod(levels))) == size
    assert levels_for(1024, None) == [8, 5, 5, 5] and levels_for(1000, [8, 5, 5, 5]) == [8, 5, 5, 5]
    with pytest.raises(ValueError, match=r"codebook.size=100: .* quantizer.levels"):
        levels_for(100, None)
    with pytest.raises(ValueError, match=r"quantizer.levels=\[8, 8\] make 64 codes.*=64"):
        levels_for(1024, [8, 8])
    with pytest.raises(ValueError, match=r"quantizer.levels=\[2, 8\]: .* 3 or more"):
        levels_for(16, [2, 8])


def test_size_is_the_grids_and_every_code_is_a_distinct_vector():
    q = _quantizer(1024).eval()
    assert q.levels == [8, 5, 5, 5] and q.codebook_sizes == (1000,)
    usage = CodebookUsage(q.codebook_names, q.codebook_sizes)
    usage.update(torch.arange(1000).view(1, 1, 1, 1000))
    cb = usage.result(code_vectors(q))["codebooks"]["codebook"]
    assert cb["used"] == cb["distinct"] == 1000 and cb["size"] == 1000
    # before the output projection the codes are the grid: level i in [-1, 1], digit i of
    # the index in base levels[i], the first level the fastest digit
    grid = q.fsq._indices_to_codes(torch.arange(1000))
    digits = torch.stack([torch.arange(1000) // 8 % 5, torch.arange(1000) % 8], 1)
    torch.testing.assert_close(grid[:, 0], (digits[:, 1] - 4) / 4)
    torch.testing.assert_close(grid[:, 1], (digits[:, 0] - 2) / 2)


def test_eval_round_trips_exactly_and_training_forwards_the_same_codes():
    q = _quantizer()
    z = 2 * torch.randn(2, 8, 3, 4)
    with torch.no_grad():
        train = q.train()(z)
        ev = q.eval()(z)
    assert ev.indices.shape == (2, 1, 3, 4) and ev.indices.dtype == torch.long
    assert int(ev.indices.max()) < 125 and torch.equal(train.indices, ev.indices)
    assert torch.equal(ev.z_q, q.decode_indices(ev.indices))
    torch.testing.assert_close(train.z_q, ev.z_q)  # straight through: the codes' value
    assert ev.loss == 0 and torch.equal(ev.counts["codebook"], torch.bincount(
        ev.indices.flatten(), minlength=125))  # fmt: skip


def test_gradients_reach_the_encoder_and_both_projections():
    q = _quantizer().train()
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    out = q(z)
    (out.z_q.pow(2).sum() + out.loss).backward()
    assert z.grad.abs().sum() > 0
    assert q.fsq.project_in.weight.grad.abs().sum() > 0
    assert q.fsq.project_out.weight.grad.abs().sum() > 0
    assert q.codebook_parameters() == []  # nothing in the grid is learned


def test_fp32_under_autocast():
    q = _quantizer().eval()
    z = torch.randn(2, 8, 3, 3)
    with torch.no_grad():
        want = q(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = q(z)
    assert got.z_q.dtype == torch.float32 and torch.equal(got.indices, want.indices)
