"""The rotation trick (quantizer.rotation_trick=true): the codes of VQ, another gradient."""

from __future__ import annotations

import pytest
import torch

from dcvq.quantizers import VectorQuantizer
from dcvq.quantizers.base import rotation_trick, straight_through


def test_gradient_by_hand_a_quarter_turn_and_a_doubling():
    """z = (1, 0) onto q = (0, 2): R turns e1 into e2 (and e2 into -e1), |q|/|z| = 2, so
    the Jacobian is 2 R and d(out . c)/dz = 2 R^T c; straight through it would be c."""
    z = torch.tensor([[1.0, 0.0]], requires_grad=True)
    q = torch.tensor([[0.0, 2.0]], requires_grad=True)
    out = rotation_trick(z, q)
    assert torch.equal(out.detach(), q.detach())
    (out * torch.tensor([[1.0, 0.0]])).sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor([[0.0, -2.0]]))
    assert q.grad is None or not q.grad.any()  # the codes learn from their loss term only


def test_matches_vector_quantize_pytorch():
    from vector_quantize_pytorch.vector_quantize_pytorch import rotate_to

    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 8, generator=g, dtype=torch.float64, requires_grad=True)
    q = torch.randn(50, 8, generator=g, dtype=torch.float64)
    c = torch.randn(50, 8, generator=g, dtype=torch.float64)
    ours = rotation_trick(z, q)
    (grad,) = torch.autograd.grad((ours * c).sum(), z)
    theirs = rotate_to(z, q)
    (want,) = torch.autograd.grad((theirs * c).sum(), z)
    torch.testing.assert_close(ours, q)
    torch.testing.assert_close(theirs, q)
    torch.testing.assert_close(grad, want)
    # not the straight-through gradient (which is c itself)
    assert not torch.allclose(grad, c)


def test_forward_value_is_q_even_for_a_zero_latent():
    z = torch.zeros(1, 3, requires_grad=True)
    q = torch.tensor([[1.0, -2.0, 0.5]])
    assert torch.equal(rotation_trick(z, q), straight_through(z, q))


@pytest.mark.parametrize("train", [True, False])
def test_vq_with_the_rotation_trick_has_vqs_codes_and_losses(train):
    torch.manual_seed(0)
    plain = VectorQuantizer(16, 8).train(train)
    rotated = VectorQuantizer(16, 8, rotation_trick=True).train(train)
    rotated.load_state_dict(plain.state_dict())
    z = torch.randn(2, 8, 3, 4, requires_grad=True)
    a, b = plain(z), rotated(z)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.loss, b.loss)
    codes = rotated.decode_indices(b.indices)
    torch.testing.assert_close(b.z_q, codes)
    (gz,) = torch.autograd.grad((b.z_q * codes).sum(), z)
    (gz_st,) = torch.autograd.grad((a.z_q * codes).sum(), z)
    assert not torch.allclose(gz, gz_st)
    rotated.eval()
    with torch.no_grad():  # encoding: the codes themselves, exactly
        out = rotated(z)
        assert torch.equal(out.z_q, rotated.decode_indices(out.indices))
