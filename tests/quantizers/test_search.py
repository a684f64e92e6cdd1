"""The nearest-code search (dcvq/quantizers/search.py): exact on every CPU path."""

import pytest
import torch

from dcvq.quantizers import search
from dcvq.quantizers.search import nearest_code


def brute_force(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    return torch.cdist(z.double(), codebook.double()).argmin(1)


@pytest.fixture(params=["onednn", "addmm"])
def cpu_product(request, monkeypatch):
    """Both CPU matrix-multiply paths of the search (oneDNN where PyTorch has it)."""
    if request.param == "addmm":
        monkeypatch.setattr(search, "_ONEDNN_LINEAR", False)
    elif not search._ONEDNN_LINEAR:
        pytest.skip("this PyTorch build has no oneDNN linear")
    return request.param


@pytest.mark.parametrize(
    "tile, chunk",
    [(2**20, 2**24), (256 * 64, 2**24), (2**20, 300 * 64), (256 * 64, 256 * 64)],
    ids=["whole", "row-tiles", "code-chunks", "tiles-and-chunks"],
)
def test_nearest_code_matches_brute_force_on_every_path(cpu_product, monkeypatch, tile, chunk):
    monkeypatch.setattr(search, "CPU_TILE_ELEMENTS", tile)
    monkeypatch.setattr(search, "DISTANCE_CHUNK_ELEMENTS", chunk)
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(700, 16, generator=g), torch.randn(1024, 16, generator=g)
    assert torch.equal(nearest_code(z, codebook), brute_force(z, codebook))
    # a column slice of a wider matrix needs no copy
    wide = torch.randn(700, 32, generator=g)
    assert torch.equal(nearest_code(wide[:, 16:], codebook), brute_force(wide[:, 16:], codebook))
    # two searches at once (the dual quantizer's halves), each against its own codebook
    codebooks = torch.stack([codebook, torch.randn(1024, 16, generator=g)])
    rows = torch.stack([z, wide[:, :16]])
    want = torch.stack([brute_force(r, c) for r, c in zip(rows, codebooks, strict=True)])
    assert torch.equal(nearest_code(rows, codebooks), want)


def test_ties_go_to_the_lowest_index_and_nan_rows_to_code_0(cpu_product):
    g = torch.Generator().manual_seed(1)
    codebook = torch.randn(256, 8, generator=g)
    codebook[200] = codebook[3]  # an exact duplicate: every row ties between 3 and 200
    codebook[130] = codebook[129]
    z = torch.cat([codebook[[3, 129, 200]] + 1e-3, torch.randn(300, 8, generator=g)])
    assert z.shape[0] * 256 >= 2**16  # large enough for the two-level argmax
    z[-1] = float("nan")
    idx = nearest_code(z, codebook)
    assert idx[:3].tolist() == [3, 129, 3]
    assert idx[-1] == 0
    assert torch.equal(idx[3:-1], brute_force(z[3:-1], codebook))


def test_two_level_argmax_is_argmax():
    g = torch.Generator().manual_seed(2)
    s = torch.randint(0, 5, (300, 512), generator=g).float()  # many exact ties
    s[7, 100] = float("nan")
    s[8, [40, 300]] = float("nan")

    def same(s: torch.Tensor) -> bool:  # one matrix, and as two searches' matrices
        halves = (h.contiguous() for h in s.chunk(2))  # made one at a time, as products are
        two = search._argmax_rows(halves)
        return torch.equal(search._argmax_rows([s]), s.argmax(1)) and torch.equal(two, s.argmax(1))

    assert same(s)
    s[7:9] = 0
    s[9, [50, 200]] = float("inf")
    assert same(s)
    odd = torch.randn(10, 100, generator=g)  # width not a multiple of the block
    assert same(odd)


def test_search_ignores_autocast_and_autograd():
    z = torch.randn(50, 8, requires_grad=True)
    codebook = torch.randn(64, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        idx = nearest_code(z, codebook)
    assert not idx.requires_grad
    assert torch.equal(idx, brute_force(z.detach(), codebook.detach()))


def test_onednn_probe_falls_back_to_addmm(monkeypatch):
    monkeypatch.setattr(search.platform, "machine", lambda: "arm64")
    assert not search._onednn_linear_works()  # measured on x86-64 only
    monkeypatch.setattr(search.platform, "machine", lambda: "x86_64")

    def broken(*args):
        raise RuntimeError("not built for this CPU")

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", broken, raising=False)
    assert not search._onednn_linear_works()
