"""Codebook usage statistics on known index sets."""

from __future__ import annotations

import math

import pytest
import torch

from dcvq.metrics.usage import (
    CodebookUsage,
    PairCounter,
    code_geometry,
    code_vectors,
    distinct_codes,
    effective_rank,
    perplexity,
)
from dcvq.quantizers.dual import DualCodebookQuantizer
from dcvq.quantizers.vq import VectorQuantizer


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


def test_distinct_codes_merges_near_duplicates_and_ignores_unused():
    gen = torch.Generator().manual_seed(0)
    spread = torch.randn(16, 8, generator=gen)
    used = torch.ones(16, dtype=torch.bool)
    assert distinct_codes(spread, used) == 16
    # a collapsed codebook: one vector plus rounding-sized differences
    collapsed = spread[:1] + 1e-5 * torch.randn(16, 8, generator=gen)
    assert distinct_codes(collapsed, used) == 1
    # codes 0-3 repeated four times, slightly apart: four distinct codes
    four = spread[:4].repeat(4, 1) + 1e-4 * torch.randn(16, 8, generator=gen)
    assert distinct_codes(four, used) == 4
    # only used codes count: codes 0 and 4 are the same, 1 and 2 are unused
    mask = torch.tensor([True, False, False, True, True] + [False] * 11)
    assert distinct_codes(four, mask) == 2
    assert distinct_codes(spread, torch.zeros(16, dtype=torch.bool)) == 0


def test_distinct_codes_counts_blocks_of_a_large_codebook():
    """More codes than one block of the distance computation."""
    codes = torch.randn(1500, 4, generator=torch.Generator().manual_seed(1))
    doubled = torch.cat([codes, codes + 1e-6])
    assert distinct_codes(doubled, torch.ones(3000, dtype=torch.bool)) == 1500


@pytest.mark.parametrize("transformer", [True, False])
def test_code_vectors_of_the_dual_quantizer_are_its_lookup_tables(transformer):
    q = DualCodebookQuantizer(
        codebook_size=8, global_dim=16, local_dim=8, global_transformer=transformer
    )
    q.eval()
    g, l = code_vectors(q)
    with torch.no_grad():
        assert torch.equal(g, q.global_codebook().float())
        assert torch.equal(l, q.local_codebook().float())


def test_code_vectors_of_a_collapsed_codebook_are_one_distinct_code():
    q = VectorQuantizer(codebook_size=10, dim=6)
    with torch.no_grad():
        q.codebook.embedding.weight.copy_(torch.arange(6.0).expand(10, 6))
    (v,) = code_vectors(q)
    assert v.shape == (10, 6)
    assert distinct_codes(v, torch.ones(10, dtype=torch.bool)) == 1
    r = CodebookUsage(["codebook"], [10])
    r.update(torch.arange(10).view(1, 1, 2, 5))
    cb = r.result([v])["codebooks"]["codebook"]
    assert cb["usage"] == 100.0 and cb["distinct"] == 1 and cb["distinct_usage"] == 10.0


# ---- geometry of the used codes -----------------------------------------------------------
def test_effective_rank_by_hand():
    """exp of the entropy of s / sum(s): codes on one line 1, k orthogonal codes of one
    norm k, singular values 3 and 1 exp(H(3/4, 1/4))."""
    line = torch.arange(1.0, 6.0)[:, None] * torch.tensor([[1.0, 2.0, -1.0]])
    assert effective_rank(line) == pytest.approx(1.0)
    assert effective_rank(torch.eye(5)[:3] * 2) == pytest.approx(3.0)
    two = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    assert effective_rank(two) == pytest.approx(
        math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    )
    assert effective_rank(torch.zeros(4, 3)) == 0.0 and effective_rank(torch.zeros(0, 3)) == 0.0


def test_nearest_neighbour_distances_relative_to_the_rms_norm():
    """Codes 0, 1, 3, 7 and 15 times e1 (0 unused): nearest-neighbour distances 2, 2, 4,
    8; RMS norm sqrt((1 + 9 + 49 + 225) / 4); the 5th percentile interpolates."""
    x = torch.tensor([0.0, 1.0, 3.0, 7.0, 15.0])
    vectors = torch.stack([x, torch.zeros(5)], 1)
    used = torch.tensor([False, True, True, True, True])
    geo = code_geometry(vectors, used)
    rms = math.sqrt((1 + 9 + 49 + 225) / 4)
    assert geo["distinct"] == 4 and geo["effective_rank"] == pytest.approx(1.0)
    assert geo["min_distance"] == pytest.approx(2 / rms)
    assert geo["nn_distance_p5"] == pytest.approx(2 / rms)  # 2, 2, 4, 8: p5 between the 2s
    assert "distinct_at_quantization" not in geo
    # the tolerance of the quantisation error: codes closer than its root are one
    at = code_geometry(vectors, used, sq_error=2.5**2)
    assert at["quantization_error"] == pytest.approx(2.5 / rms)
    assert at["distinct_at_quantization"] == 3  # 3 is within 2.5 of 1; 7 and 15 are not
    assert code_geometry(vectors, used, sq_error=100.0)["distinct_at_quantization"] == 1
    # one used code: no neighbour, no distance
    one = code_geometry(vectors, torch.tensor([False, True, False, False, False]))
    assert (one["distinct"], one["min_distance"], one["nn_distance_p5"]) == (1, 0.0, 0.0)


def test_usage_weighs_each_batchs_error_by_its_positions():
    """The split's mean squared error: batch means weighted by their B*h*w positions."""
    u = CodebookUsage(["global", "local"], [4, 4])
    u.update(torch.zeros(1, 2, 2, 2, dtype=torch.long), {"global": torch.tensor(1.0),
             "local": torch.tensor(4.0)})  # fmt: skip
    u.update(torch.ones(3, 2, 2, 2, dtype=torch.long), {"global": torch.tensor(9.0),
             "local": torch.tensor(4.0)})  # fmt: skip
    vectors = [torch.tensor([[0.0], [8.0], [20.0], [30.0]])] * 2
    books = u.result(vectors)["codebooks"]
    rms = math.sqrt(32)
    assert books["global"]["quantization_error"] == pytest.approx(math.sqrt(7.0) / rms)
    assert books["local"]["quantization_error"] == pytest.approx(2.0 / rms)
    assert books["global"]["distinct_at_quantization"] == 2  # 8 apart > sqrt(7)
    for cb in books.values():
        assert cb["min_distance"] == pytest.approx(8 / rms)
    # no errors given (a model without info["errors"]): no quantisation keys
    plain = CodebookUsage(["codebook"], [4])
    plain.update(torch.zeros(1, 1, 2, 2, dtype=torch.long))
    assert "distinct_at_quantization" not in plain.result(vectors[:1])["codebooks"]["codebook"]


def test_geometry_of_a_collapsed_codebook():
    gen = torch.Generator().manual_seed(0)
    collapsed = torch.randn(1, 8, generator=gen) + 1e-5 * torch.randn(64, 8, generator=gen)
    geo = code_geometry(collapsed, torch.ones(64, dtype=torch.bool))
    assert geo["distinct"] == 1 and geo["effective_rank"] < 1.01
    assert geo["min_distance"] < 1e-3 and geo["nn_distance_p5"] < 1e-3
