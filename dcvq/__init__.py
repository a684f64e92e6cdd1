"""dcvq: Dual Codebook VQ image tokenizers."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "build_model", "load_model"]


def __getattr__(name: str) -> Any:
    # Lazy: `import dcvq.config` (Hydra's plugin scan imports it through
    # hydra_plugins/dcvq_schemas in every Hydra app of this environment) must not import torch.
    if name in ("build_model", "load_model"):
        from dcvq import build

        return getattr(build, name)
    raise AttributeError(f"module 'dcvq' has no attribute {name!r}")
