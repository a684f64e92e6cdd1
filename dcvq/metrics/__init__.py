"""Reconstruction metrics: per-image errors, codebook usage, streaming FID, LPIPS, protocols."""

from dcvq.metrics.fid import StreamingFID, load_inception, resolve_inception_weights
from dcvq.metrics.image import l1, l2, psnr, ssim, to_uint8
from dcvq.metrics.lpips import LPIPS
from dcvq.metrics.protocols import PROTOCOLS, Protocol, get_protocol
from dcvq.metrics.usage import CodebookUsage, perplexity

__all__ = [
    "LPIPS",
    "PROTOCOLS",
    "CodebookUsage",
    "Protocol",
    "StreamingFID",
    "get_protocol",
    "l1",
    "l2",
    "load_inception",
    "perplexity",
    "psnr",
    "resolve_inception_weights",
    "ssim",
    "to_uint8",
]
