"""k-means initialisation and dead-code restart of code tables (dcvq.quantizers.tables)."""

from __future__ import annotations

import pytest
import torch

from dcvq.quantizers import DualCodebookQuantizer, VectorQuantizer
from dcvq.quantizers.tables import kmeans, kmeans_init_, latent_rows, restart_unused_


def clusters(k: int, d: int, per: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` tight clusters far apart: (rows ``k*per x d``, their means ``k x d``)."""
    g = torch.Generator().manual_seed(seed)
    means = 10 * torch.randn(k, d, generator=g)
    rows = means.repeat_interleave(per, 0) + 0.01 * torch.randn(k * per, d, generator=g)
    return rows, means


def test_kmeans_finds_separated_clusters():
    rows, means = clusters(4, 8, 50)
    # from several draws: Lloyd's rounds move a start with two codes in one cluster apart
    found = [kmeans(rows, 4, torch.Generator().manual_seed(s)) for s in range(5)]
    best = min(found, key=lambda c: torch.cdist(rows, c).min(1).values.sum())
    assert torch.cdist(means, best).min(1).values.max() < 0.1


def test_kmeans_with_fewer_rows_than_codes_uses_rows():
    rows = torch.randn(5, 3)
    codes = kmeans(rows, 16, torch.Generator().manual_seed(0))
    assert codes.shape == (16, 3)
    assert torch.cdist(codes, rows).min(1).values.max() < 1e-5  # every code is a row


def latent_of(rows: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    return rows.view(b, h, w, -1).permute(0, 3, 1, 2)


def test_kmeans_init_writes_each_codebooks_table_from_its_channels():
    rows, means = clusters(4, 8, 16)  # 64 rows = 4 images of 4x4
    g_rows, g_means = clusters(4, 8, 16, seed=1)
    z = latent_of(torch.cat([g_rows, rows], 1), 4, 4, 4)  # global channels first
    assert torch.equal(latent_rows(z, slice(8, 16)), rows)
    # more codes than clusters: each cluster gets codes from the random start
    dual = DualCodebookQuantizer(16, 8, 8, global_transformer=False, kmeans_init=True)
    kmeans_init_(dual, z, torch.Generator().manual_seed(0))
    for table, want in ((dual.local_codebook.embedding.weight, means),
                        (dual.global_codebook.embedding.weight, g_means)):  # fmt: skip
        assert torch.cdist(want, table).min(1).values.max() < 0.5  # near a centre each
    # every latent is then next to its code
    out = dual(z)
    assert (out.z_q - z).pow(2).sum(1).sqrt().max() < 0.5


def test_kmeans_init_of_a_generated_codebook_writes_the_transformers_input():
    """T: the base table gets the centroids; the codes are the transformer's image of
    them (post-norm layers: each code comes out standardised over its channels)."""
    torch.manual_seed(0)
    q = DualCodebookQuantizer(8, 8, 8, transformer_layers=1, transformer_heads=2)
    z = torch.randn(2, 16, 4, 4)
    local_before = q.local_codebook.embedding.weight.clone()
    kmeans_init_(q, z, torch.Generator().manual_seed(0))
    base = q.global_codebook.base
    assert torch.cdist(base, latent_rows(z, slice(0, 8))).min(1).values.max() < 3  # data's
    assert not torch.equal(q.local_codebook.embedding.weight, local_before)
    q.eval()
    codes = q.global_codebook()
    assert torch.allclose(codes.mean(1), torch.zeros(8), atol=1e-5)


def test_a_code_unused_long_enough_restarts_at_a_latent_row():
    q = VectorQuantizer(8, 4, restart_unused_after=3)
    z = torch.randn(2, 4, 2, 2)
    rows = latent_rows(z, slice(0, 4))
    before = q.codebook.embedding.weight.clone()
    used = torch.tensor([1, 1, 0, 0, 0, 0, 0, 5])
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        assert restart_unused_(q, z, {"codebook": used}, g) == {"codebook": 0}
    assert q.unused_steps[0].tolist() == [0, 0, 2, 2, 2, 2, 2, 0]
    assert restart_unused_(q, z, {"codebook": used}, g) == {"codebook": 5}
    table = q.codebook.embedding.weight
    assert torch.equal(table[[0, 1, 7]], before[[0, 1, 7]])  # used codes untouched
    assert torch.cdist(table[2:7], rows).min(1).values.max() == 0  # dead ones: rows
    assert q.unused_steps.sum() == 0
    assert "unused_steps" in q.state_dict()  # restored on resume


def test_restart_leaves_a_generated_codebook_alone():
    q = DualCodebookQuantizer(8, 8, 8, transformer_layers=1, transformer_heads=2,
                              restart_unused_after=1)  # fmt: skip
    base = q.global_codebook.base.clone()
    none = torch.zeros(8, dtype=torch.long)
    got = restart_unused_(q, torch.randn(1, 16, 2, 2), {"global": none, "local": none},
                          torch.Generator())  # fmt: skip
    assert got == {"local": 8} and torch.equal(q.global_codebook.base, base)


def test_restart_needs_a_count_of_steps():
    with pytest.raises(ValueError, match="quantizer.restart_unused_after=-1"):
        VectorQuantizer(8, 4, restart_unused_after=-1)
    assert "unused_steps" not in VectorQuantizer(8, 4).state_dict()  # off: no new keys
