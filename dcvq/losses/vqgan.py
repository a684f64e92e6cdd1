"""The VQGAN objective (taming's ``VQLPIPSWithDiscriminator``), split in its two steps.

generator:     nll + d_weight * disc_factor * g + codebook_weight * L_VQ
               nll = mean(|x - x_hat| + perceptual_weight * LPIPS(x, x_hat))
               g = -mean(D(x_hat)),  d_weight = |grad nll| / (|grad g| + 1e-4) * disc_weight
discriminator: disc_factor * hinge(D(x), D(x_hat))

Before ``disc_start`` the adversarial terms are zero, so the discriminator is not even
run (taming runs it and multiplies by zero: same values, wasted compute).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dcvq.losses.discriminator import NLayerDiscriminator
from dcvq.metrics.lpips import LPIPS


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def adaptive_weight(
    nll: Tensor,
    g: Tensor,
    last_layer: Tensor,
    disc_weight: float,
    grad_scale: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Balance the GAN gradient against the reconstruction gradient at the last layer.

    ``grad_scale`` (fp16: the GradScaler's ``scale``) multiplies both losses before they
    are differentiated, as for the main backward: unscaled fp16 gradients underflow. The
    ratio is unchanged (the 1e-4 is scaled too). A scaled gradient that overflows gives
    a weight of 0; the GradScaler skips that step anyway.
    """
    scale = None
    if grad_scale is not None:
        scale = grad_scale(torch.ones((), device=nll.device))
        nll, g = grad_scale(nll), grad_scale(g)
    nll_grads = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grads = torch.autograd.grad(g, last_layer, retain_graph=True)[0]
    # Norms in fp32: under AMP the bf16/fp16 grad norms under/overflow.
    eps = 1e-4 if scale is None else 1e-4 * scale
    d_weight = nll_grads.float().norm() / (g_grads.float().norm() + eps)
    if scale is not None:
        d_weight = torch.nan_to_num(d_weight, nan=0.0, posinf=0.0)
    return torch.clamp(d_weight, 0.0, 1e4).detach() * disc_weight


class VQGANLoss(nn.Module):
    def __init__(
        self,
        disc_start: int = 10000,
        disc_weight: float = 0.8,
        disc_factor: float = 1.0,
        codebook_weight: float = 1.0,
        pixelloss_weight: float = 1.0,
        perceptual_weight: float = 1.25,
        disc_num_layers: int = 3,
        disc_ndf: int = 64,
        disc_in_channels: int = 3,
        disc_loss: str = "hinge",
        lpips_weights: str | None = None,
    ) -> None:
        super().__init__()
        if disc_loss not in ("hinge", "vanilla"):
            raise ValueError(f"loss.disc_loss={disc_loss!r}: expected 'hinge' or 'vanilla'")
        self.disc_start = disc_start
        self.disc_weight = disc_weight
        self.disc_factor = disc_factor
        self.codebook_weight = codebook_weight
        self.pixelloss_weight = pixelloss_weight
        self.perceptual_weight = perceptual_weight
        self.d_loss_fn = hinge_d_loss if disc_loss == "hinge" else vanilla_d_loss
        self.perceptual = LPIPS(lpips_weights) if perceptual_weight > 0 else None
        self.discriminator = NLayerDiscriminator(disc_in_channels, disc_ndf, disc_num_layers)

    def disc_active(self, step: int) -> bool:
        return step >= self.disc_start and self.disc_factor > 0

    def reconstruction(self, x: Tensor, x_hat: Tensor) -> Tensor:
        """Per-pixel ``|x - x_hat| + perceptual_weight * LPIPS`` in fp32."""
        x, x_hat = x.float(), x_hat.float()
        rec = self.pixelloss_weight * (x - x_hat).abs()
        if self.perceptual is not None:
            rec = rec + self.perceptual_weight * self.perceptual(x, x_hat)
        return rec

    def generator_loss(
        self,
        x: Tensor,
        x_hat: Tensor,
        vq_loss: Tensor,
        step: int,
        last_layer: Tensor,
        grad_scale: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``grad_scale``: the fp16 GradScaler's ``scale``, for the adaptive weight."""
        nll = self.reconstruction(x, x_hat).mean()
        logs = {"nll": nll.detach(), "l1": (x.float() - x_hat.float()).abs().mean().detach()}
        loss = nll + self.codebook_weight * vq_loss.mean()
        if self.disc_active(step):
            g = -self.discriminator(x_hat).float().mean()
            if torch.is_grad_enabled() and self.training:
                d_weight = adaptive_weight(nll, g, last_layer, self.disc_weight, grad_scale)
            else:
                d_weight = torch.zeros((), device=x.device)
            loss = loss + d_weight * self.disc_factor * g
            logs |= {"g": g.detach(), "d_weight": d_weight}
        logs["vq"] = vq_loss.detach().mean()
        logs["total"] = loss.detach()
        return loss, logs

    def discriminator_loss(
        self, x: Tensor, x_hat: Tensor, step: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if not self.disc_active(step):
            zero = torch.zeros((), device=x.device)
            return zero, {"d": zero, "logits_real": zero, "logits_fake": zero}
        logits_real = self.discriminator(x.detach()).float()
        logits_fake = self.discriminator(x_hat.detach()).float()
        d = self.disc_factor * self.d_loss_fn(logits_real, logits_fake)
        return d, {
            "d": d.detach(),
            "logits_real": logits_real.mean().detach(),
            "logits_fake": logits_fake.mean().detach(),
        }
