"""The VQ model: encoder -> quant_conv -> quantizer -> post_quant_conv -> decoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from dcvq.model.autoencoder import Decoder, Encoder
from dcvq.quantizers.base import Quantizer


class VQModel(nn.Module):
    """A VQGAN autoencoder around any :class:`~dcvq.quantizers.Quantizer`.

    Images are in ``[-1, 1]``. ``encode`` returns the straight-through quantized latent
    and the ``B x K x h x w`` indices (K codebooks, global first for dual quantizers).
    """

    def __init__(
        self,
        quantizer: Quantizer,
        *,
        embed_dim: int = 256,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        resolution: int = 256,
        z_channels: int = 256,
        in_channels: int = 3,
        out_ch: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if quantizer.dim != embed_dim:
            raise ValueError(
                f"the quantizer works on {quantizer.dim} channels but model.embed_dim="
                f"{embed_dim}: make quantizer.global_dim + quantizer.local_dim (or "
                "quantizer.dim) equal model.embed_dim"
            )
        arch = dict(
            ch=ch,
            ch_mult=tuple(ch_mult),
            num_res_blocks=num_res_blocks,
            attn_resolutions=tuple(attn_resolutions),
            resolution=resolution,
            z_channels=z_channels,
            dropout=dropout,
        )
        self.encoder = Encoder(in_channels=in_channels, **arch)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.quantizer = quantizer
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.decoder = Decoder(out_ch=out_ch, **arch)
        self.downsample_factor = 2 ** (len(ch_mult) - 1)

    def _quantize(self, x: Tensor):
        """``(latent, QuantizerOutput)``."""
        self.check_size(x)
        z = self.latent(x)
        return z, self.quantizer(z)

    def latent(self, x: Tensor) -> Tensor:
        """The encoder latent the quantizer receives, ``B x dim x h x w``."""
        return self.quant_conv(self.encoder(x))

    def check_size(self, x: Tensor) -> None:
        """Images whose sides are not multiples of the downsampling would come back
        silently cropped (each stride-2 level drops an odd row): refused instead."""
        f = self.downsample_factor
        h, w = x.shape[-2:]
        if h % f or w % f:
            cropped, padded = f"{h - h % f}x{w - w % f}", f"{-(-h // f) * f}x{-(-w // f) * f}"
            raise ValueError(
                f"{h}x{w} images: this model downsamples by {f}, so height and width must "
                f"be multiples of {f} (its output would be {cropped}): crop them to "
                f"{cropped} or pad them to {padded}"
            )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _, out = self._quantize(x)
        return out.z_q, out.indices

    def decode(self, z_q: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(z_q))

    def decode_indices(self, indices: Tensor) -> Tensor:
        return self.decode(self.quantizer.decode_indices(indices))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """Returns ``(reconstruction, vq_loss, info)``; ``info`` holds ``indices``,
        ``losses``, ``counts`` and ``errors`` (per codebook; ``errors``: the mean squared
        distance between latent and code, ``Quantizer.quantization_errors``) and the
        ``latent`` (detached)."""
        z, out = self._quantize(x)
        info = {
            "indices": out.indices,
            "losses": out.losses,
            "counts": out.counts,
            "errors": self.quantizer.quantization_errors(z, out.z_q),
            "latent": z.detach(),  # for dead-code restarts (dcvq.quantizers.tables)
        }
        return self.decode(out.z_q), out.loss, info
