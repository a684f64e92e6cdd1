"""CVQQuantizer: interface, usage EMA, dead-code re-initialisation, contrastive term,
and identical updates across ranks under a 2-process gloo group.

Run as a script, this file is one rank of the distributed test (see ``_ddp_worker``).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dcvq.quantizers import cvq as cvq_module
from dcvq.quantizers.cvq import CVQQuantizer

N, D = 16, 8


def _quantizer(**kw) -> CVQQuantizer:
    torch.manual_seed(0)
    return CVQQuantizer(kw.pop("n", N), kw.pop("d", D), **kw)


def _latent(b: int = 2, h: int = 3, w: int = 4, seed: int = 1, d: int = D) -> torch.Tensor:
    return torch.randn(b, d, h, w, generator=torch.Generator().manual_seed(seed))


def _flat(z: torch.Tensor) -> torch.Tensor:
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def _sim(f: torch.Tensor, e: torch.Tensor, distance: str) -> torch.Tensor:
    """M x N similarity written directly from the definitions (larger = closer)."""
    if distance == "l2":
        return -((f[:, None, :] - e[None, :, :]) ** 2).sum(-1)
    return F.cosine_similarity(f[:, None, :], e[None, :, :], dim=-1)


@pytest.mark.parametrize("distance", ["l2", "cos"])
@pytest.mark.parametrize("contras", [False, True])
def test_train_forward_backward(distance: str, contras: bool) -> None:
    q = _quantizer(distance=distance, contras_loss=contras).train()
    z = _latent().requires_grad_(True)
    out = q(z)
    assert out.z_q.shape == z.shape
    assert out.indices.shape == (2, 1, 3, 4) and out.indices.dtype == torch.long
    assert torch.isfinite(out.loss) and out.loss.ndim == 0
    # the in-place re-initialisation inside forward must not break backward
    (out.loss + out.z_q.pow(2).mean()).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert q.codebook.embedding.weight.grad.abs().sum() > 0
    assert set(out.losses) == {"codebook"} and not out.losses["codebook"].requires_grad


@pytest.mark.parametrize("distance", ["l2", "cos"])
def test_eval_round_trip_and_nearest_code(distance: str) -> None:
    q = _quantizer(distance=distance).eval()
    z = _latent()
    before = copy.deepcopy(q.state_dict())
    with torch.no_grad():
        out = q(z)
        # z_q is the straight-through z + (q - z): equal to the code up to rounding
        torch.testing.assert_close(q.decode_indices(out.indices), out.z_q, rtol=0, atol=1e-6)
        expected = _sim(_flat(z), q.codebook.embedding.weight, distance).argmax(1)
        assert torch.equal(out.indices.flatten(), expected)
    # eval mode neither re-initialises nor touches the usage EMA
    for k, v in q.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_usage_ema_by_hand() -> None:
    q = _quantizer(decay=0.9, anchor="none").train()
    p0 = torch.rand(N, generator=torch.Generator().manual_seed(3)) / N
    q.embed_prob.copy_(p0)
    out = q(_latent(b=2, h=3, w=4))
    share = torch.bincount(out.indices.flatten(), minlength=N).float() / 24
    torch.testing.assert_close(q.embed_prob, 0.9 * p0 + 0.1 * share)


def _dead_code_setup(distance: str, anchor: str) -> tuple[CVQQuantizer, torch.Tensor]:
    """Codes 0-2 sit on the batch's three clusters; code 3 is unused by this batch but has
    a high EMA usage; codes 4-7 are dead (zero usage) and far from every feature."""
    q = _quantizer(n=8, d=4, distance=distance, anchor=anchor).train()
    eye = torch.eye(4) * 2
    dead = -5 * torch.tensor([[1, 1, 1, 1], [1, 2, 1, 1], [1, 1, 3, 1], [2, 1, 1, 1.0]])
    with torch.no_grad():
        q.codebook.embedding.weight.copy_(torch.cat([eye, dead]))
        q.embed_prob.copy_(torch.tensor([0.25, 0.25, 0.25, 0.25, 0, 0, 0, 0]))
    g = torch.Generator().manual_seed(5)
    feats = eye[:3].repeat_interleave(4, 0) + 0.1 * torch.randn(12, 4, generator=g)
    z = feats.view(1, 3, 4, 4).permute(0, 3, 1, 2).contiguous()  # 12 positions
    return q, z


@pytest.mark.parametrize("distance", ["l2", "cos"])
@pytest.mark.parametrize("anchor", ["closest", "probrandom", "random"])
def test_reinit_moves_dead_codes_only(distance: str, anchor: str) -> None:
    q, z = _dead_code_setup(distance, anchor)
    old = q.codebook.embedding.weight.detach().clone()
    out = q(z)
    new = q.codebook.embedding.weight.detach()
    assert set(out.indices.flatten().tolist()) == {0, 1, 2}
    # codes with a healthy EMA usage are bit-for-bit unchanged, used in this batch or not
    assert torch.equal(new[:4], old[:4])
    # dead codes (usage 0): e <- (1 - a) e + a * anchor, a = exp(-1e-3)
    a = torch.exp(torch.tensor(-1e-3))
    anchors = (new[4:] - (1 - a) * old[4:]) / a
    feats = _flat(z)
    if anchor == "closest":
        expected = feats[_sim(feats, old[4:], distance).argmax(0)]
        torch.testing.assert_close(anchors, expected, rtol=1e-4, atol=1e-4)
    else:
        # each anchor is one of the batch features
        gap = torch.cdist(anchors, feats).min(1).values
        assert gap.max() < 1e-3
    # ... so dead codes now sit (almost) on the batch features
    assert torch.cdist(new[4:], feats).min(1).values.max() < 0.02
    assert torch.cdist(old[4:], feats).min(1).values.min() > 5


def test_first_batch_reinitialises_once() -> None:
    q, z = _dead_code_setup("l2", "closest")
    q.first_batch = True
    q(z)
    assert bool(q.initialised)
    w1 = q.codebook.embedding.weight.detach().clone()
    p1 = q.embed_prob.clone()
    q(z + 1.0)
    assert torch.equal(q.codebook.embedding.weight, w1)
    assert not torch.equal(q.embed_prob, p1)  # the usage EMA keeps running


@pytest.mark.parametrize("distance", ["l2", "cos"])
def test_contrastive_term_by_hand(distance: str) -> None:
    n = 4
    q = _quantizer(n=n, distance=distance, anchor="none", contras_loss=True).train()
    z = _latent(b=1, h=3, w=3)  # M = 9: 2 positives (M // N), 4 negatives (M // 2)
    e = q.codebook.embedding.weight.detach().clone()
    out = q(z)
    f = _flat(z)
    s = _sim(f, e, distance)
    ce = []
    for k in range(n):
        col = s[:, k].sort().values
        logits = torch.cat([col[-2:].mean().view(1), col[:4]]) / 0.07
        ce.append(-torch.log_softmax(logits, 0)[0])
    qz = e[s.argmax(1)]
    expected = 1.25 * ((qz - f) ** 2).mean() + torch.stack(ce).mean()
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-5)


def test_chunked_scan_matches_single_pass(monkeypatch) -> None:
    q1 = _quantizer(distance="l2", anchor="closest", contras_loss=True).train()
    q2 = copy.deepcopy(q1)
    z = _latent(b=2, h=4, w=4)
    a = q1(z)
    monkeypatch.setattr(cvq_module, "DISTANCE_CHUNK_ELEMENTS", 32 * 3)  # 3 codes a chunk
    b = q2(z)
    assert torch.equal(a.indices, b.indices)
    torch.testing.assert_close(a.loss, b.loss)
    for k, v in q1.state_dict().items():
        torch.testing.assert_close(v, q2.state_dict()[k], msg=k)


def test_buffers_are_checkpointed() -> None:
    keys = set(_quantizer(anchor="random").state_dict())
    assert {"embed_prob", "initialised", "pool", "pool_count"} <= keys
    assert "pool" not in _quantizer(anchor="closest").state_dict()
    with pytest.raises(ValueError, match="anchor"):
        CVQQuantizer(N, D, anchor="nearest")


# --------------------------------------------------------------------------- distributed
DDP_N, DDP_D, DDP_STEPS = 32, 8, 5
DDP_CONFIGS = {
    "closest_l2_contras": dict(anchor="closest", distance="l2", contras_loss=True),
    "probrandom_cos_contras": dict(anchor="probrandom", distance="cos", contras_loss=True),
    "random_l2": dict(anchor="random", distance="l2"),
    # global batch smaller than N: the pool fills, overflows, then overwrites random slots
    "random_cos_small": dict(anchor="random", distance="cos"),
}


def _ddp_batch(name: str, rank: int, step: int) -> torch.Tensor:
    # different sizes per rank: M = 32 / 48, or 4 / 6 for the small-batch pool
    shape = (1, DDP_D, 2, 2 + rank) if name.endswith("small") else (2 + rank, DDP_D, 4, 4)
    return torch.randn(shape, generator=torch.Generator().manual_seed(100 + 10 * rank + step))


def _ddp_worker(rank: int, world: int, out_dir: Path) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{out_dir / 'store'}", rank=rank, world_size=world
    )
    results = {}
    for name, kw in DDP_CONFIGS.items():
        q = _quantizer(n=DDP_N, d=DDP_D, **kw).train()
        torch.manual_seed(1000 + rank)  # ranks' RNG streams differ, as in real training
        for step in range(DDP_STEPS):
            out = q(_ddp_batch(name, rank, step))
            (out.loss + out.z_q.pow(2).mean()).backward()
            with torch.no_grad():
                for p in q.parameters():  # what DDP does: average the gradients
                    dist.all_reduce(p.grad)
                    p.sub_(0.5 * p.grad / world)
                    p.grad = None
        results[name] = q.state_dict()
    # one forward on each rank's half of a batch, to compare with one process on all of it
    q = _quantizer(n=DDP_N, d=DDP_D, anchor="closest", distance="l2").train()
    q(_ddp_batch("equivalence", rank, 0))
    results["equivalence"] = q.state_dict()
    torch.save(results, out_dir / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_ddp_ranks_stay_identical(tmp_path: Path) -> None:
    from ranks import run_ranks  # here: the ranks run this file without tests/ on sys.path

    run_ranks(__file__, tmp_path, timeout=120)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    for name, state in r0.items():
        for k, v in state.items():
            assert torch.equal(v, r1[name][k]), f"{name}.{k} differs between ranks"
    for name, kw in DDP_CONFIGS.items():
        init = _quantizer(n=DDP_N, d=DDP_D, **kw).state_dict()
        w = "codebook.embedding.weight"
        assert not torch.equal(r0[name][w], init[w]), name
        assert r0[name]["embed_prob"].sum() > 0, name
    assert int(r0["random_cos_small"]["pool_count"]) == DDP_N
    # two ranks = one process on the concatenated batch
    single = _quantizer(n=DDP_N, d=DDP_D, anchor="closest", distance="l2").train()
    single(torch.cat([_ddp_batch("equivalence", r, 0) for r in range(2)]))
    for k, v in single.state_dict().items():
        torch.testing.assert_close(r0["equivalence"][k], v, msg=k)


if __name__ == "__main__":
    _ddp_worker(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
