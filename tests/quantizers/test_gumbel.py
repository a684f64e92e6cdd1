"""GumbelQuantizer: interface, temperature schedule, KL term, parity with taming."""

from __future__ import annotations

import math

import pytest
import torch

from dcvq.quantizers.gumbel import GumbelQuantizer, temperature_at

N, D = 16, 8


def _quantizer(**kw) -> GumbelQuantizer:
    torch.manual_seed(0)
    return GumbelQuantizer(N, D, **kw)


def _latent(b: int = 2, h: int = 3, w: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, D, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("straight_through", [True, False])
def test_train_forward_backward(straight_through: bool) -> None:
    q = _quantizer(straight_through=straight_through).train()
    z = _latent().requires_grad_(True)
    out = q(z)
    assert out.z_q.shape == z.shape
    assert out.indices.shape == (2, 1, 3, 4) and out.indices.dtype == torch.long
    assert torch.isfinite(out.loss) and out.loss.ndim == 0
    (out.loss + out.z_q.pow(2).mean()).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert q.proj.weight.grad.abs().sum() > 0 and q.embed.weight.grad.abs().sum() > 0
    assert set(out.losses) == {"codebook"} and not out.losses["codebook"].requires_grad
    if straight_through:
        # hard forward: every position carries exactly one code's vector
        rows = q.embed.weight[out.indices[:, 0]].permute(0, 3, 1, 2)
        torch.testing.assert_close(out.z_q, rows, rtol=1e-5, atol=1e-5)


def test_eval_is_hard_deterministic_and_round_trips() -> None:
    q = _quantizer().eval()
    z = _latent()
    with torch.no_grad():
        a, b = q(z), q(z)
        assert torch.equal(a.indices, b.indices) and torch.equal(a.z_q, b.z_q)
        # the noiseless argmax of the logits
        assert torch.equal(a.indices[:, 0], q.proj(z).argmax(1))
        assert torch.equal(q.decode_indices(a.indices), a.z_q)


def test_kl_term_by_hand() -> None:
    q = GumbelQuantizer(3, 2, kl_weight=0.5)
    with torch.no_grad():
        q.proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]]).view(3, 2, 1, 1))
        q.proj.bias.copy_(torch.tensor([0.1, -0.2, 0.0]))
    pts = [(0.5, -1.0), (2.0, 0.3)]  # two positions of a 1 x 2 x 1 x 2 latent
    z = torch.tensor(pts).t().reshape(1, 2, 1, 2)
    expected = 0.0
    for x, y in pts:
        logits = [x + 0.1, 2 * y - 0.2, -x + y]
        s = sum(math.exp(v) for v in logits)
        probs = [math.exp(v) / s for v in logits]
        expected += sum(p * math.log(p * 3 + 1e-10) for p in probs)
    expected = 0.5 * expected / len(pts)
    for train in (True, False):
        out = q.train(train)(z)
        assert out.loss.item() == pytest.approx(expected, rel=1e-5)
        assert out.losses["codebook"].item() == pytest.approx(expected, rel=1e-5)


def test_cosine_schedule_matches_taming_scheduler() -> None:
    from taming.lr_scheduler import LambdaWarmUpCosineScheduler

    steps = 1000
    ref = LambdaWarmUpCosineScheduler(
        warm_up_steps=0, lr_min=1e-2, lr_max=0.9, lr_start=0.9, max_decay_steps=steps
    )
    q = _quantizer(temp_start=0.9, temp_min=1e-2, anneal_steps=steps)
    assert q.temperature == pytest.approx(0.9)
    for s in (0, 1, 250, 500, 999, 1000, 5000):
        q.set_step(s)
        assert q.temperature == pytest.approx(ref(s), rel=1e-9)


def test_exponential_and_constant_schedules() -> None:
    q = _quantizer(
        temperature_schedule="exponential", temp_start=1.0, temp_min=1 / 16, anneal_steps=100
    )
    for s, t in ((0, 1.0), (25, 0.5), (50, 0.25), (100, 1 / 16), (10_000, 1 / 16)):
        q.set_step(s)
        assert q.temperature == pytest.approx(t)
    assert temperature_at(123, "constant", 0.7, 1e-3, 10) == 0.7
    with pytest.raises(ValueError, match="temperature_schedule"):
        GumbelQuantizer(N, D, temperature_schedule="linear")


def test_training_uses_scheduled_temperature(gumbel_temperatures) -> None:
    q = _quantizer(anneal_steps=10, temp_min=0.1).train()
    q.set_step(5)
    q(_latent())
    assert gumbel_temperatures == [pytest.approx(temperature_at(5, "cosine", 0.9, 0.1, 10))]


@pytest.mark.parametrize("straight_through", [True, False])
def test_train_mode_matches_taming(straight_through: bool) -> None:
    from taming.modules.vqvae.quantize import GumbelQuantize

    q = _quantizer(straight_through=straight_through, kl_weight=5e-4).train()
    q.set_step(1234)
    ref = GumbelQuantize(D, D, N, straight_through=straight_through, kl_weight=5e-4)
    ref.proj.load_state_dict(q.proj.state_dict())
    ref.embed.load_state_dict(q.embed.state_dict())
    ref.train()
    z = _latent()
    torch.manual_seed(7)
    out = q(z)
    torch.manual_seed(7)
    z_q, loss, (_, _, ind) = ref(z, temp=q.temperature)
    torch.testing.assert_close(out.z_q, z_q)
    torch.testing.assert_close(out.loss, loss)
    assert torch.equal(out.indices[:, 0], ind)
