"""The encoder's and decoder's attention (AttnBlock) through
``scaled_dot_product_attention``, against the explicit softmax it replaced (taming's
operations, one by one): the same outputs and gradients to fp32 rounding."""

from __future__ import annotations

import numerics
import torch
from torch import Tensor

from dcvq.model.autoencoder import AttnBlock


def explicit_attention(block: AttnBlock, x: Tensor, scale: float | None = None) -> Tensor:
    """taming's ``AttnBlock.forward``: ``softmax(q k^T / sqrt(C))`` as a ``hw x hw`` map."""
    h = block.norm(x)
    b, c, hh, ww = h.shape
    q = block.q(h).reshape(b, c, hh * ww).permute(0, 2, 1)
    k = block.k(h).reshape(b, c, hh * ww)
    v = block.v(h).reshape(b, c, hh * ww)
    w = torch.softmax(torch.bmm(q, k) * (c**-0.5 if scale is None else scale), dim=2)
    return x + block.proj_out(torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww))


def test_sdpa_attention_is_the_explicit_softmax():
    torch.manual_seed(0)
    c, side = 64, 16
    block = AttnBlock(c)
    with torch.no_grad():  # sharp attention maps, not the near-uniform ones of the init
        for conv in (block.q, block.k):
            conv.weight.mul_(4)
    x = torch.randn(2, c, side, side, requires_grad=True)
    out, ref = block(x), explicit_attention(block, x)
    # two passes' sums: the convolutions' fan-ins, then q.k (C terms) and weights.v (hw)
    terms = 2 * (numerics.summed_terms(block) + c + side * side)
    tol = numerics.fp32_kappa(terms, out.numel()) * ref.detach().std().item()
    assert (out - ref).abs().max().item() <= tol
    weight = torch.randn_like(out)
    params = [x, *block.parameters()]
    grads = torch.autograd.grad((out * weight).sum(), params)
    ref_grads = torch.autograd.grad((ref * weight).sum(), params)
    positions = x.shape[0] * side * side  # a weight's gradient sums over them
    kappa = numerics.fp32_kappa(terms + positions, sum(g.numel() for g in grads))
    assert numerics.gradient_error(grads, ref_grads, kappa) <= 1
    # a real mismatch fails: another softmax temperature, off by 1 %
    wrong = explicit_attention(block, x, scale=1.01 * c**-0.5)
    assert (wrong - ref).abs().max().item() > tol
