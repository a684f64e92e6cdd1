from dcvq.losses.discriminator import NLayerDiscriminator
from dcvq.losses.perceptual import LPIPS
from dcvq.losses.vqgan import VQGANLoss

__all__ = ["LPIPS", "NLayerDiscriminator", "VQGANLoss"]
