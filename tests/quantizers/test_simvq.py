"""SimVQQuantizer: a frozen random codebook times one learned linear layer."""

from __future__ import annotations

import torch

from dcvq.quantizers.base import commitment_loss
from dcvq.quantizers.simvq import SimVQQuantizer


def _quantizer(**kw) -> SimVQQuantizer:
    torch.manual_seed(0)
    return SimVQQuantizer(16, 8, **kw)


def test_the_codebook_is_the_frozen_table_through_the_linear_layer():
    q = _quantizer()
    assert "frozen_codebook" in q.state_dict()  # checkpointed: a resumed run keeps it
    assert "frozen_codebook" not in dict(q.named_parameters())
    torch.testing.assert_close(q.codebook(), q.frozen_codebook @ q.proj.weight.t() + q.proj.bias)
    assert q.codebook_parameters() == [q.proj.weight, q.proj.bias]


def test_nearest_code_loss_and_exact_round_trip():
    q = _quantizer().eval()
    z = torch.randn(2, 8, 3, 4)
    with torch.no_grad():
        out = q(z)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 8)
    codes = q.codebook().detach()
    assert torch.equal(out.indices.flatten(), torch.cdist(rows, codes).argmin(1))
    assert torch.equal(out.z_q, q.decode_indices(out.indices))
    want = commitment_loss(rows, codes[out.indices.flatten()], 0.25, legacy=False)
    torch.testing.assert_close(out.loss, want)


def test_training_moves_the_linear_layer_only():
    q = _quantizer().train()
    frozen = q.frozen_codebook.clone()
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    out = q(z)
    (out.z_q.pow(2).sum() + out.loss).backward()
    assert z.grad.abs().sum() > 0  # straight through
    assert q.proj.weight.grad.abs().sum() > 0 and q.proj.bias.grad.abs().sum() > 0
    torch.optim.SGD(q.parameters(), lr=0.1).step()
    assert torch.equal(q.frozen_codebook, frozen)
