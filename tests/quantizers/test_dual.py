import copy

import pytest
import torch

from dcvq.quantizers import DualCodebookQuantizer
from dcvq.quantizers.codebooks import TransformerCodebook


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
