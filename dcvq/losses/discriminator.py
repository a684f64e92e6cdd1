"""pix2pix PatchGAN discriminator (taming's ``NLayerDiscriminator``), same names and init."""

from __future__ import annotations

from torch import Tensor, nn


def init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.constant_(m.bias, 0.0)


class NLayerDiscriminator(nn.Module):
    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        kw, padw = 4, 1
        seq: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kw, 2, padw),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            # No conv bias before BatchNorm, as pix2pix.
            seq += [
                nn.Conv2d(ndf * prev, ndf * mult, kw, stride, padw, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        seq.append(nn.Conv2d(ndf * mult, 1, kw, 1, padw))
        self.main = nn.Sequential(*seq)
        self.apply(init_weights)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)
