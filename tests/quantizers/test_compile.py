"""The quantizers under ``torch.compile(fullgraph=True)``: one graph each (no graph
break), in training and evaluation, with the eager results; and the transformer
codebook's eval-mode cache, which a compiled graph must not freeze.

The graphs are traced by Dynamo and AOT autograd and run by ``aot_eager`` (inductor's
code generation adds nothing to what is checked here and takes minutes on a CPU; the
trainer's ``compile=model`` test runs inductor on the dual quantizer)."""

from __future__ import annotations

import copy

import numerics
import pytest
import torch

from dcvq.quantizers import CVQQuantizer, DualCodebookQuantizer, GumbelQuantizer, VectorQuantizer


def dual(global_dim: int, local_dim: int, transformer: bool = True) -> DualCodebookQuantizer:
    return DualCodebookQuantizer(
        16, global_dim, local_dim, global_transformer=transformer, transformer_layers=1,
        transformer_heads=2, transformer_ff=16, transformer_dropout=0.0,
    )  # fmt: skip


QUANTIZERS = {
    "vq": lambda: VectorQuantizer(16, 8),
    "t128_s128": lambda: dual(4, 4),
    "s128_s128": lambda: dual(4, 4, transformer=False),
    "t192_s64": lambda: dual(6, 2),
    "t64_s192": lambda: dual(2, 6),
    "gumbel": lambda: GumbelQuantizer(16, 8),
    "cvq": lambda: CVQQuantizer(16, 8),
}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("make", QUANTIZERS.values(), ids=QUANTIZERS.keys())
def test_one_graph_with_the_eager_results(make, train):
    torch.manual_seed(0)
    q = make().train(train)
    twin = copy.deepcopy(q)  # CVQ's training forward rewrites its codebook: one each
    z = torch.randn(2, 8, 4, 4)
    outs, grads = [], []
    for module, run in ((q, q), (twin, torch.compile(twin, fullgraph=True, backend="aot_eager"))):
        torch.manual_seed(1)  # Gumbel's noise drawn alike
        x = z.clone().requires_grad_(train)
        with torch.set_grad_enabled(train):
            out = run(x)
            if train:
                params = [x, *module.parameters()]
                grads.append(torch.autograd.grad(out.z_q.sum() + out.loss, params))
        outs.append(out)
    eager, got = outs
    # the compiled search is the plain batched one (no oneDNN, no two-level argmax): the
    # same scores to rounding, and these random latents have no near-ties
    assert torch.equal(got.indices, eager.indices)
    tol = numerics.fp32_kappa(z.numel(), z.numel())
    torch.testing.assert_close(got.z_q, eager.z_q, rtol=tol, atol=tol)
    torch.testing.assert_close(got.loss, eager.loss, rtol=tol, atol=0)
    for name, count in eager.counts.items():
        assert torch.equal(got.counts[name], count)
    if train:
        kappa = numerics.fp32_kappa(z.numel() + numerics.summed_terms(q), z.numel())
        assert numerics.gradient_error(grads[1], grads[0], kappa) <= 1


def test_compiled_eval_follows_weight_changes():
    """Eager eval without autograd caches the generated table until a weight changes; a
    compiled graph regenerates it every call, so it follows an in-place step at once,
    and even a ``.data`` write, which the eager cache does not see."""
    torch.manual_seed(0)
    q = dual(4, 4).eval()
    compiled = torch.compile(q, fullgraph=True, backend="aot_eager")
    z = torch.randn(2, 8, 4, 4)
    base = q.global_codebook.base
    with torch.no_grad():
        before = compiled(z).z_q
        base.add_(0.5)  # in place, as an optimizer step
        after, eager = compiled(z).z_q, q(z).z_q
        tol = numerics.fp32_tolerance(eager, q.global_codebook)
        assert not torch.allclose(after[:, :4], before[:, :4], atol=1e3 * tol)
        torch.testing.assert_close(after, eager, rtol=0, atol=tol)
        base.data.mul_(-1)  # a write no version counter records: the eager cache is stale
        stale, fresh = q(z), compiled(z)
        want = q.global_codebook.generate()[fresh.indices[:, 0]].permute(0, 3, 1, 2)
        torch.testing.assert_close(fresh.z_q[:, :4], want, rtol=0, atol=tol)
        assert torch.equal(stale.z_q, eager)
