import copy

import numerics
import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from dcvq.quantizers import DualCodebookQuantizer, VectorQuantizer
from dcvq.quantizers.base import QuantizerOutput, commitment_loss, straight_through
from dcvq.quantizers.codebooks import TransformerCodebook
from dcvq.quantizers.search import nearest_code


def small(transformer: bool = True, **kw) -> DualCodebookQuantizer:
    torch.manual_seed(0)
    args = dict(
        global_dim=16,
        local_dim=8,
        transformer_layers=2,
        transformer_heads=4,
        transformer_ff=32,
        global_transformer=transformer,
    )
    return DualCodebookQuantizer(codebook_size=12, **(args | kw))


def test_paper_defaults():
    q = DualCodebookQuantizer(codebook_size=512)
    t = q.global_codebook.transformer
    assert len(t.layers) == 6
    layer = t.layers[0]
    assert layer.self_attn.num_heads == 8 and layer.self_attn.embed_dim == 128
    assert layer.linear1.out_features == 2048 and layer.dropout.p == 0.1
    assert not layer.norm_first  # post-norm, PyTorch default
    assert q.global_codebook.base.shape == (512, 128)
    assert q.local_codebook.embedding.weight.shape == (512, 128)


def test_split_global_first_and_shapes():
    q = small().eval()
    z = torch.randn(2, 24, 3, 4)
    out = q(z)
    assert out.indices.shape == (2, 2, 3, 4)
    assert set(out.losses) == set(out.counts) == {"global", "local"}
    # the first global_dim channels are quantized against the generated global table
    with torch.no_grad():
        table = q.global_codebook()
    flat = z[:, :16].permute(0, 2, 3, 1).reshape(-1, 16)
    assert torch.equal(out.indices[:, 0].flatten(), torch.cdist(flat, table).argmin(1))
    assert torch.allclose(
        out.z_q[:, :16].permute(0, 2, 3, 1).reshape(-1, 16),
        table[out.indices[:, 0].flatten()],
        atol=1e-6,
    )
    for k, name in enumerate(("global", "local")):
        assert torch.equal(
            out.counts[name], torch.bincount(out.indices[:, k].flatten(), minlength=12)
        )


def test_gradients_reach_transformer_base_local_and_input():
    q = small().train()
    z = torch.randn(2, 24, 3, 3, requires_grad=True)
    out = q(z)
    (out.z_q.pow(2).sum() + out.loss).backward()
    assert z.grad.abs().sum() > 0  # straight-through
    assert q.global_codebook.base.grad.abs().sum() > 0
    assert q.local_codebook.embedding.weight.grad.abs().sum() > 0
    for name, p in q.global_codebook.transformer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_simple_option_has_no_transformer():
    q = small(transformer=False)
    assert not any("transformer" in n for n, _ in q.named_parameters())


def test_codes_are_one_sequence():
    """Changing one base code changes the generated value of the others (a set, not a batch)."""
    q = small().eval()
    with torch.no_grad():
        before = q.global_codebook.generate().clone()
        q.global_codebook.base[0] += 1.0
        after = q.global_codebook.generate()
    assert not torch.allclose(before[1:], after[1:])


def test_eval_cache_reused_and_invalidated():
    q = small().eval()
    cb = q.global_codebook
    calls = []
    original = TransformerCodebook.generate

    def counting(self):
        calls.append(1)
        return original(self)

    cb.generate = counting.__get__(cb)
    z = torch.randn(1, 24, 2, 2)
    with torch.no_grad():
        first = q(z).indices
        second = q(z).indices
    assert len(calls) == 1 and torch.equal(first, second)  # deterministic, computed once

    # an optimizer step changes the weights: the cache must be dropped
    opt = torch.optim.SGD(q.parameters(), lr=0.5)
    q.train()
    out = q(torch.randn(1, 24, 2, 2))
    (out.loss + out.z_q.sum()).backward()
    opt.step()
    q.eval()
    calls.clear()
    with torch.no_grad():
        table1 = cb()
        cb()
        assert len(calls) == 1
        opt.zero_grad()
        with torch.enable_grad():
            q.train()
            out = q(torch.randn(1, 24, 2, 2))
            (out.loss + out.z_q.sum()).backward()
            q.eval()
        calls.clear()
        cb()  # mode change dropped the cache
        assert len(calls) == 1
        opt.step()  # step while in eval mode: detected through the version counters
        table2 = cb()
        assert len(calls) == 2 and not torch.allclose(table1, table2)
        # load_state_dict counts as a weight change too
        other = small().eval()
        other.global_codebook.base.data += 1.0
        q.load_state_dict(other.state_dict())
        table3 = cb()
        assert len(calls) == 3
        assert torch.allclose(table3, other.global_codebook.generate())
        # a write the version counter misses (.data, fused optimizers): clear_cache()
        cb.base.data.add_(1.0)
        assert torch.equal(cb(), table3)
        cb.clear_cache()
        assert torch.allclose(cb(), cb.generate())


def test_codebook_built_in_inference_mode_is_not_cached():
    with torch.inference_mode():
        q = small().eval()
        table = q.global_codebook()
        q.global_codebook.base.add_(1.0)  # inference tensors have no version counter
        assert not torch.equal(q.global_codebook(), table)


def test_train_mode_codebook_is_stochastic_eval_is_not():
    q = small(transformer_dropout=0.5)
    with torch.no_grad():
        q.train()
        assert not torch.equal(q.global_codebook(), q.global_codebook())
        q.eval()
        assert torch.equal(q.global_codebook(), q.global_codebook().clone())


def test_decode_indices_uses_generated_codebook():
    q = small().eval()
    z = torch.randn(2, 24, 3, 3)
    with torch.no_grad():
        out = q(z)
        decoded = q.decode_indices(out.indices)
    assert torch.allclose(decoded, out.z_q, atol=1e-6)
    # the common bug: looking the global indices up in the base table
    wrong = q.global_codebook.base[out.indices[:, 0]].permute(0, 3, 1, 2)
    assert not torch.allclose(decoded[:, :16], wrong)


def test_state_dict_round_trip_keeps_codebook():
    q = small().eval()
    clone = copy.deepcopy(q)
    fresh = small(transformer=True)
    fresh.load_state_dict(clone.state_dict())
    fresh.eval()
    z = torch.randn(1, 24, 2, 2)
    with torch.no_grad():
        assert torch.equal(fresh(z).indices, q(z).indices)


def test_heads_must_divide_global_dim():
    with pytest.raises(ValueError, match="transformer_heads=8 must divide.*global_dim=12"):
        DualCodebookQuantizer(codebook_size=4, global_dim=12, local_dim=4)


# ---------------------------------------------------------------- one search for both halves


def two_call_reference(q: DualCodebookQuantizer, z: torch.Tensor) -> QuantizerOutput:
    """The quantizer as it was before both halves shared one set of kernels: each half's
    rows copied out, searched, looked up and penalised on its own (two calls of each)."""
    z = z.float()
    b, _, h, w = z.shape
    halves = z.split([q.global_dim, q.local_dim], 1)
    tables = (q.global_codebook(), q.local_codebook())
    codes, indices, losses = [], [], []
    for part, table in zip(halves, tables, strict=True):
        rows = part.permute(0, 2, 3, 1).reshape(-1, part.shape[1])
        idx = nearest_code(rows, table)
        code = F.embedding(idx, table).float()
        if rows.requires_grad or code.requires_grad:
            loss = commitment_loss(rows, code, q.beta, q.legacy_beta)
            code = straight_through(rows, code)
        else:
            loss = (1 + q.beta) * F.mse_loss(code, rows)
        codes.append(code.view(b, h, w, -1).permute(0, 3, 1, 2))
        indices.append(idx.view(b, h, w))
        losses.append(loss)
    return QuantizerOutput(
        z_q=torch.cat(codes, 1),
        loss=losses[0] + losses[1],
        indices=torch.stack(indices, 1),
        losses={"global": losses[0].detach(), "local": losses[1].detach()},
    )


SPLITS = {"t128_s128": (True, 128, 128), "s128_s128": (False, 128, 128),
          "t192_s64": (True, 192, 64), "t64_s192": (True, 64, 192)}  # fmt: skip


def split_quantizer(name: str, size: int) -> DualCodebookQuantizer:
    """A Table 2 split at its real widths, with a small codebook transformer; two pairs of
    identical codes in each codebook, so that rows tie between them."""
    transformer, global_dim, local_dim = SPLITS[name]
    torch.manual_seed(0)
    q = DualCodebookQuantizer(
        size, global_dim, local_dim, global_transformer=transformer, transformer_layers=1,
        transformer_heads=4, transformer_ff=32, transformer_dropout=0.1,
    )  # fmt: skip
    with torch.no_grad():
        for table in (getattr(q.global_codebook, "base", None), q.local_codebook.embedding.weight):
            if table is not None:
                table[[size - 1, size // 2]] = table[[1, 3]]
    return q


def tied_latent(q: DualCodebookQuantizer) -> torch.Tensor:
    """``2 x C x 8 x 8``: random rows, and rows on the duplicated codes (exact ties)."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, q.dim, 8, 8, generator=g) * 0.5
    with torch.no_grad():
        table = q._codes().view(2, -1, q.width)
    z[0, : q.global_dim, 0, :2] = table[0, [1, 3], : q.global_dim].t()
    z[0, q.global_dim :, 1, :2] = table[1, [1, 3], : q.local_dim].t()
    return z


def loss_tolerance(loss: torch.Tensor, rows: int, width: int) -> float:
    """A mean of ``rows * width`` squares summed in another order (and one rounding of
    the ``1 / count`` scale): relative to the loss itself, all terms being positive."""
    return (numerics.fp32_kappa(rows * width, 2) + numerics.EPS32) * abs(loss.item())


@pytest.mark.parametrize("size", [64, 512])
@pytest.mark.parametrize("split", SPLITS)
def test_one_batched_search_gives_the_two_call_results(split, size):
    """Same indices bit for bit (ties included), same codes, and losses and gradients
    within fp32 rounding of the two-call path, in train and eval mode. 512 codes and 128
    rows reach the two-level argmax; 64 codes the plain one."""
    q = split_quantizer(split, size)
    z = tied_latent(q)
    rows = z.shape[0] * z.shape[2] * z.shape[3]
    # eval, without autograd: the cached codebook and the one-pass loss
    q.eval()
    with torch.no_grad():
        got, ref = q(z), two_call_reference(q, z)
    assert torch.equal(got.indices, ref.indices)
    assert torch.equal(got.z_q, ref.z_q) and got.z_q.is_contiguous()
    for name, width in (("global", q.global_dim), ("local", q.local_dim)):
        tol = loss_tolerance(ref.losses[name], rows, width)
        assert abs(got.losses[name] - ref.losses[name]) <= tol, name
    assert torch.equal(ref.indices[0, 0, 0, :2], torch.tensor([1, 3]))  # ties: lowest index
    assert torch.equal(ref.indices[0, 1, 1, :2], torch.tensor([1, 3]))

    # train: dropout masks drawn alike (same seed), gradients into the latent and codebooks
    q.train()
    weight = torch.randn_like(z)
    grads, outs = [], []
    for path in (q, lambda x: two_call_reference(q, x)):
        torch.manual_seed(2)
        x = z.clone().requires_grad_(True)
        out = path(x)
        params = [x, *q.parameters()]
        grads.append(torch.autograd.grad((out.z_q * weight).sum() + out.loss, params))
        outs.append(out)
    got, ref = outs
    assert torch.equal(got.indices, ref.indices) and torch.equal(got.z_q, ref.z_q)
    widths = max(q.global_dim, q.local_dim)
    assert abs(got.loss - ref.loss) <= loss_tolerance(ref.loss, rows, widths)
    # a code's gradient sums the rows it quantizes, then crosses the transformer's layers
    n_terms = rows + numerics.summed_terms(q)
    kappa = numerics.fp32_kappa(n_terms, sum(g.numel() for g in grads[1]))
    assert numerics.gradient_error(grads[0], grads[1], kappa) <= 1


def test_a_wrong_half_is_caught():
    """The comparison above fails when one half's loss is off by a little (its width
    counted with the padding) or the halves' codes swap."""
    q = split_quantizer("t192_s64", 64).eval()
    z = tied_latent(q)
    rows = z.shape[0] * z.shape[2] * z.shape[3]
    with torch.no_grad():
        got, ref = q(z), two_call_reference(q, z)
    padded_mean = got.losses["local"] * q.local_dim / q.width
    assert abs(padded_mean - ref.losses["local"]) > loss_tolerance(ref.losses["local"], rows, 64)
    assert not torch.equal(got.indices.flip(1), ref.indices)


def aten_ops(quantizer: torch.nn.Module, train: bool) -> int:
    """ATen operations of one call (profiler events, nested ones included), the second of
    two: ``B=8``, ``256 x 16 x 16`` latent, as in ``benchmarks/quantizer.py``."""
    z = torch.randn(8, 256, 16, 16, requires_grad=train)
    quantizer.train(train)

    def call() -> None:
        with torch.set_grad_enabled(train):
            out = quantizer(z)
            if train:
                (out.z_q.sum() + out.loss).backward()
                quantizer.zero_grad(set_to_none=True)

    call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    return sum(e.name.startswith("aten::") for e in prof.events())


def test_the_dual_call_runs_few_more_operations_than_one_codebook():
    """Both halves in one set of kernels: a dual call costs at most 1.25 (eval, cached
    transformer codebook) and 1.3 (training) times the operations of a ``vq`` call at 512
    codes; two separate quantizations cost 2.02 and 2.10. GPU calls at these sizes are
    launch-bound, so this is the ratio of their times there."""
    torch.manual_seed(0)
    vq = VectorQuantizer(512, 256)
    t128 = DualCodebookQuantizer(512, 128, 128, transformer_layers=1)
    s128 = DualCodebookQuantizer(512, 128, 128, global_transformer=False)
    assert aten_ops(t128, train=False) <= 1.25 * aten_ops(vq, train=False)
    assert aten_ops(s128, train=True) <= 1.3 * aten_ops(vq, train=True)
