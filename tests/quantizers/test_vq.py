import pytest
import torch

from dcvq.quantizers import VectorQuantizer
from dcvq.quantizers.base import commitment_loss


def test_forward_shapes_counts_and_round_trip():
    torch.manual_seed(0)
    q = VectorQuantizer(codebook_size=16, dim=8).eval()
    z = torch.randn(2, 8, 4, 5)
    out = q(z)
    assert out.z_q.shape == z.shape
    assert out.indices.shape == (2, 1, 4, 5) and out.indices.dtype == torch.long
    assert int(out.counts["codebook"].sum()) == 2 * 4 * 5
    assert torch.equal(out.counts["codebook"], torch.bincount(out.indices.flatten(), minlength=16))
    assert torch.allclose(q.decode_indices(out.indices), out.z_q, atol=1e-6)
    # each position got its nearest code
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8)
    assert torch.equal(out.indices.flatten(), torch.cdist(flat, q.codebook()).argmin(1))


def test_straight_through_and_codebook_gradients():
    q = VectorQuantizer(codebook_size=16, dim=8)
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    out = q(z)
    (out.z_q.sum() + out.loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert q.codebook.embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("legacy", [False, True])
def test_beta_convention(legacy):
    z = torch.ones(4, requires_grad=True)
    e = torch.zeros(4, requires_grad=True)
    loss = commitment_loss(z, e, beta=0.25, legacy=legacy)
    loss.backward()
    # legacy=False (the release): beta on the commitment term, which moves z
    z_scale, e_scale = (0.25, 1.0) if not legacy else (1.0, 0.25)
    assert torch.allclose(z.grad, torch.full((4,), 2 * z_scale / 4))
    assert torch.allclose(e.grad, torch.full((4,), -2 * e_scale / 4))


@pytest.mark.parametrize("legacy", [False, True])
def test_encoding_without_autograd_gives_the_training_values(legacy):
    torch.manual_seed(0)
    q = VectorQuantizer(codebook_size=16, dim=8, legacy_beta=legacy)
    z = torch.randn(2, 8, 3, 3)
    with_grad = q(z.requires_grad_())
    with torch.no_grad():
        without = q(z)
    assert torch.equal(without.indices, with_grad.indices)
    assert torch.allclose(without.z_q, with_grad.z_q, atol=1e-6)
    assert torch.allclose(without.loss, with_grad.loss)
