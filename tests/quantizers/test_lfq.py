"""LFQQuantizer: sign bits as indices, the entropy and commitment terms, round trip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dcvq.metrics.usage import CodebookUsage, code_vectors
from dcvq.quantizers.lfq import LFQQuantizer


def _quantizer(size: int = 16, dim: int = 8, **kw) -> LFQQuantizer:
    torch.manual_seed(0)
    return LFQQuantizer(size, dim, **kw)


def test_size_must_be_a_power_of_two():
    with pytest.raises(ValueError, match=r"codebook.size=100: .* power of two .*=128"):
        LFQQuantizer(100, 8)
    assert LFQQuantizer(1024, 8).bits == 10


def test_indices_are_the_signs_read_as_binary_first_channel_most_significant():
    q = _quantizer().eval()
    z = torch.randn(2, 8, 3, 4)
    with torch.no_grad():
        out = q(z)
        x = q.project_in(z.permute(0, 2, 3, 1))  # B x h x w x 4
    want = ((x > 0).long() * torch.tensor([8, 4, 2, 1])).sum(-1)
    assert out.indices.dtype == torch.long and torch.equal(out.indices[:, 0], want)
    assert torch.equal(out.z_q, q.decode_indices(out.indices))
    assert torch.equal(out.counts["codebook"], torch.bincount(want.flatten(), minlength=16))


def test_loss_by_hand():
    """0.1 (mean per-position entropy - batch entropy) + 0.25 |x - sign x|^2, with the
    soft assignment softmax(200 x.c) over the +-1 codes (the library's temperature)."""
    q = _quantizer().train()
    z = torch.randn(2, 8, 3, 4)
    out = q(z)
    x = q.project_in(z.permute(0, 2, 3, 1).reshape(-1, 8))
    bits = (torch.arange(16)[:, None] & torch.tensor([8, 4, 2, 1])) != 0
    codes = bits.float() * 2 - 1
    prob = F.softmax(200 * x @ codes.t(), dim=1)

    def entropy(p):
        return -(p * p.clamp(min=1e-5).log()).sum(-1)

    want = 0.1 * (entropy(prob).mean() - entropy(prob.mean(0))) + 0.25 * F.mse_loss(
        x, torch.sign(x)
    )
    torch.testing.assert_close(out.loss, want)
    assert out.losses["codebook"] == out.loss.detach()
    assert q.eval()(z).loss == 0  # eval: no loss terms


@pytest.mark.parametrize("train", [True, False])
def test_same_as_vector_quantize_pytorch_in_one_process(train):
    from vector_quantize_pytorch import LFQ

    q = _quantizer().train(train)
    ref = LFQ(dim=8, codebook_size=16, entropy_loss_weight=0.1, diversity_gamma=1.0,
              commitment_loss_weight=0.25).train(train)  # fmt: skip
    ref.project_in.load_state_dict(q.project_in.state_dict())
    ref.project_out.load_state_dict(q.project_out.state_dict())
    z = torch.randn(2, 8, 3, 4)
    out = q(z)
    z_q, idx, loss = ref(z)
    assert torch.equal(out.indices[:, 0], idx.long())
    torch.testing.assert_close(out.z_q, z_q)
    torch.testing.assert_close(out.loss, loss)


def test_training_forward_gives_the_codes_and_gradients_reach_the_encoder():
    q = _quantizer()
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    train = q.train()(z)
    (train.z_q.pow(2).sum() + train.loss).backward()
    assert z.grad.abs().sum() > 0 and q.project_in.weight.grad.abs().sum() > 0
    with torch.no_grad():
        ev = q.eval()(z)
    assert torch.equal(train.indices, ev.indices)
    torch.testing.assert_close(train.z_q, ev.z_q)
    assert q.codebook_parameters() == []


def test_every_code_is_a_distinct_vector():
    q = _quantizer().eval()
    usage = CodebookUsage(q.codebook_names, q.codebook_sizes)
    usage.update(torch.arange(16).view(1, 1, 4, 4))
    cb = usage.result(code_vectors(q))["codebooks"]["codebook"]
    assert cb["used"] == cb["distinct"] == 16
