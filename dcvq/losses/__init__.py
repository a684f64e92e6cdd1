from dcvq.losses.discriminator import NLayerDiscriminator
from dcvq.losses.vqgan import VQGANLoss

__all__ = ["NLayerDiscriminator", "VQGANLoss"]
