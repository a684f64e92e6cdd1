"""dcvq: Dual Codebook VQ image tokenizers."""

from dcvq.build import build_model, load_model

__version__ = "0.1.0"
__all__ = ["__version__", "build_model", "load_model"]
