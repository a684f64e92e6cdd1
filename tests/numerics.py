"""Tolerances for comparing two computations that differ only by rounding, derived from
the computation rather than measured on one CPU (AVX2 and AVX-512 kernels sum in other
orders; bf16 and fp16 round every product's inputs). Every test that compares numbers
across summation orders, ranks, devices or precisions takes its bound from here.

The model of the error, shared by every bound:

- **fp32, another summation order.** A sum of K products carries a relative rounding
  error ~ eps * sqrt(K) (the running sum's errors add like a random walk), and the
  layers crossed add theirs in quadrature: eps * sqrt(sum K) of the result's scale,
  ``K`` being the fan-ins on the path (:func:`summed_terms`).
- **Autocast (bf16, fp16).** The inputs of every matrix product are rounded to the low
  precision (relative error eps_low each) and accumulated in fp32, so each layer adds a
  relative error ~ eps_low whatever its fan-in; over ``L`` layers: eps_low * sqrt(L).
- **The largest of P elements** of a Gaussian error: * sqrt(2 ln P).
- **Gradients that are zero in exact arithmetic** (a conv bias before a one-channel
  GroupNorm group, attention key biases) are rounding noise of the larger gradients they
  cancel: they are bounded by kappa times the model's largest gradient, not by their own
  tensor's (which is itself noise).

Each test that uses a bound also shows that it fails on a real mismatch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

EPS32 = torch.finfo(torch.float32).eps  # 1.19e-7


def layers(*modules: nn.Module) -> list[nn.Module]:
    """The convolutions and linear layers of ``modules``: the products a pass sums."""
    return [
        m for module in modules for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)
    ]


def fan_in(layer: nn.Module) -> int:
    if isinstance(layer, nn.Conv2d):
        return layer.in_channels // layer.groups * math.prod(layer.kernel_size)
    return layer.in_features


def summed_terms(*modules: nn.Module) -> int:
    """Products summed along one pass: the fan-in of every convolution and linear layer
    (attention's two products add under 3 %: within the margins of the bounds)."""
    return sum(fan_in(m) for m in layers(*modules))


def extreme(n_elements: int) -> float:
    """How many standard deviations the largest of ``n_elements`` Gaussian errors reaches."""
    return math.sqrt(2 * math.log(max(n_elements, 2)))


def fp32_kappa(n_terms: int, n_elements: int) -> float:
    """Relative error, of its scale, that any of ``n_elements`` results of sums over
    ``n_terms`` products may show between two fp32 summation orders."""
    return EPS32 * math.sqrt(n_terms) * extreme(n_elements)


def amp_kappa(dtype: torch.dtype, depth: int, n_elements: int) -> float:
    """Relative error, of its scale, that any of ``n_elements`` results of ``depth``
    layers of autocast products (inputs rounded to ``dtype``, fp32 accumulation) may show
    against fp32."""
    return torch.finfo(dtype).eps * math.sqrt(depth) * extreme(n_elements)


def fp32_tolerance(out: Tensor, *modules: nn.Module) -> float:
    """Largest difference two fp32 passes through ``modules`` may show when their kernels
    sum in another order or their inputs differ by one rounding: GroupNorm keeps every
    layer's activations of order one, so the error is kappa in units of the output's std;
    two independent passes: * sqrt(2). f16 decoder: sum K = 113,792, N = 196,608, output
    std 0.33: 9.2e-5; measured 7.2e-6 (AVX-512), 2.4e-5 (AVX2), 2.7e-5 (no SIMD)."""
    kappa = fp32_kappa(2 * summed_terms(*modules), out.numel())
    return kappa * out.detach().std().item()


def gradient_error(got: Sequence[Tensor], ref: Sequence[Tensor], kappa: float) -> float:
    """Largest ratio, over every element of a model's gradients (or of anything
    proportional to them, e.g. Adam's first moments), of the difference to what rounding
    allows: ``kappa`` times its tensor's largest gradient, plus ``kappa`` times the
    model's largest for gradients that cancel to zero. <= 1 when they agree to rounding."""
    assert len(got) == len(ref) > 0
    g_max = max(r.abs().max().item() for r in ref)
    worst = 0.0
    for x, r in zip(got, ref, strict=True):
        bound = kappa * (r.abs().max().item() + g_max)
        worst = max(worst, (x - r).abs().max().item() / bound)
    return worst


def second_moment_error(got: dict, ref: dict, kappa: float) -> float:
    """Largest ratio, over every element of Adam's ``exp_avg_sq`` (optimizer state dicts'
    ``state``), of the difference to what rounding allows when each gradient element may
    differ by ``kappa`` times the largest gradient of its tensor: <= 1 when the states
    agree to float precision.

    v = (1 - b2) sum_t b2^(T-t) g_t^2, so |dv| <= 2 (1 - b2) sum_t |g_t dg_t| ~ 2 kappa
    sqrt(v max v): an error relative to the gradient's magnitude, not to v (a small
    element's squared gradient is relatively far noisier); gradients that cancel to zero
    (module docstring): + kappa^2 max v overall.
    """
    v_max = max(s["exp_avg_sq"].max().item() for s in ref.values())
    worst = 0.0
    for i, state in ref.items():
        v = state["exp_avg_sq"]
        dv = (got[i]["exp_avg_sq"] - v).abs()
        bound = kappa * (2 * (v * v.max()).sqrt() + kappa * v_max)
        worst = max(worst, (dv / bound).max().item())
    return worst


def relative_error(got: Iterable[float], ref: Iterable[float], scale: float = 1.0) -> float:
    """Largest ``|a - b| / max(|b|, scale)``: losses are means of quantities of order one
    (pixels in [-1, 1], logits), so their noise is relative to that scale, not to a mean
    that cancels."""
    return max(abs(a - b) / max(abs(b), scale) for a, b in zip(got, ref, strict=True))


def ddp_error(ddp: dict, model: nn.Module, opt_state: dict, pixels: int) -> tuple[float, float]:
    """A DDP run's checkpoint ``ddp`` against one process at the global batch after the
    same steps (its ``model`` and its autoencoder optimiser's ``opt_state``; ``pixels``:
    batch x H x W). Returns (the fraction of weight elements more than 1e-6 apart, the
    second-moment error ratio of :func:`second_moment_error`, <= 1 at float precision).

    Gradients agree to float precision, but Adam's first steps move every element by about
    +-lr whatever the gradient's size: elements whose true gradient is zero (conv biases
    before a one-channel GroupNorm group) follow the sign of rounding noise. So all but a
    handful of weight elements agree to 1e-6 (1% of lr: far above what rounding moves the
    others by); a real mismatch moves nearly all of them. The second moments sum the same
    terms in another order (two half batches, then the all-reduce): ``pixels`` positions
    plus the fan-ins crossed forward and backward.
    """
    diffs = torch.cat(
        [
            (ddp["model"][k] - v).abs().flatten()
            for k, v in model.state_dict().items()
            if v.is_floating_point()
        ]
    )
    kappa = fp32_kappa(pixels + 2 * summed_terms(model), sum(p.numel() for p in model.parameters()))
    moments = second_moment_error(ddp["opt_ae"]["state"], opt_state["state"], kappa)
    return (diffs > 1e-6).float().mean().item(), moments
