"""Codebook usage statistics on known index sets."""

from __future__ import annotations

import math

import pytest
import torch

from dcvq.metrics.usage import CodebookUsage, PairCounter, perplexity


def test_perplexity_of_known_distributions():
    assert perplexity(torch.tensor([5, 5, 5, 5, 0, 0])) == pytest.approx(4.0)
    assert perplexity(torch.tensor([7, 0, 0])) == pytest.approx(1.0)
    p = torch.tensor([0.5, 0.25, 0.25])
    want = math.exp(-float((p * p.log()).sum()))
    assert perplexity(torch.tensor([2, 1, 1])) == pytest.approx(want)
    assert perplexity(torch.zeros(4, dtype=torch.long)) == 0.0


def test_single_codebook_usage_dead_counts_over_batches():
    u = CodebookUsage(["codebook"], [8])
    u.update(torch.tensor([0, 1, 1, 2]).view(1, 1, 2, 2))
    u.update(torch.tensor([2, 2, 0, 0]).view(1, 1, 2, 2))
    r = u.result()
    cb = r["codebooks"]["codebook"]
    assert cb["counts"] == [3, 2, 3, 0, 0, 0, 0, 0]
    assert cb["used"] == 3 and cb["dead"] == 5 and cb["usage"] == pytest.approx(37.5)
    assert cb["perplexity"] == pytest.approx(perplexity(torch.tensor([3, 2, 3])))
    assert "pairs" not in r


def test_dual_pairs():
    u = CodebookUsage(["global", "local"], [4, 4])
    g = torch.tensor([0, 0, 1, 1, 0, 3])
    l = torch.tensor([0, 0, 2, 2, 1, 3])
    u.update(torch.stack([g, l]).view(1, 2, 2, 3))
    r = u.result()
    assert r["codebooks"]["global"]["counts"] == [3, 2, 0, 1]
    assert r["codebooks"]["local"]["counts"] == [2, 1, 2, 1]
    pairs = r["pairs"]
    # (0,0) x2, (1,2) x2, (0,1), (3,3)
    assert pairs["unique"] == 4 and pairs["possible"] == 16
    assert pairs["usage"] == pytest.approx(25.0)
    assert pairs["perplexity"] == pytest.approx(perplexity(torch.tensor([2, 2, 1, 1])))


def test_pair_counter_merges_across_many_batches():
    gen = torch.Generator().manual_seed(0)
    pc = PairCounter(n_local=50)
    all_g, all_l = [], []
    for _ in range(30):
        g = torch.randint(0, 50, (1000,), generator=gen)
        l = torch.randint(0, 50, (1000,), generator=gen)
        pc.update(g, l)
        all_g.append(g)
        all_l.append(l)
    ids = torch.cat(all_g) * 50 + torch.cat(all_l)
    want = torch.bincount(ids, minlength=2500)
    unique, ppl = pc.result()
    assert unique == int((want > 0).sum())
    assert ppl == pytest.approx(perplexity(want))


def test_wrong_index_shape_is_an_error():
    with pytest.raises(ValueError, match="B x 2 x h x w"):
        CodebookUsage(["global", "local"], [4, 4]).update(torch.zeros(1, 1, 2, 2, dtype=torch.long))
