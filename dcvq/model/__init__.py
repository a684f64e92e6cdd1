from dcvq.model.autoencoder import Decoder, Encoder
from dcvq.model.vqgan import VQModel

__all__ = ["Decoder", "Encoder", "VQModel"]
