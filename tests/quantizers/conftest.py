"""Fixtures of the quantizer tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def gumbel_temperatures(monkeypatch) -> list[float]:
    """The temperature of every ``gumbel_softmax`` call from here on (a training forward
    of GumbelQuantizer), in order."""
    seen: list[float] = []
    real = torch.nn.functional.gumbel_softmax

    def spy(logits, tau=1.0, **kw):
        seen.append(tau)
        return real(logits, tau=tau, **kw)

    monkeypatch.setattr(torch.nn.functional, "gumbel_softmax", spy)
    return seen
