"""What changed between a checkpoint's stored config and the config in hand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, sub in node.items():
        out |= _flat(sub, f"{prefix}.{key}" if prefix else str(key))
    return out


def config_changes(saved_yaml: str, cfg: DictConfig, keys: Sequence[str]) -> list[str]:
    """``key: saved -> now`` for every leaf under ``keys`` (dotted keys or prefixes,
    e.g. ``model`` or ``eval.protocol``) whose value differs; ``saved_yaml`` is the
    config text a checkpoint stores."""
    if not saved_yaml:
        return []
    old = _flat(OmegaConf.to_container(OmegaConf.create(saved_yaml)))
    new = _flat(OmegaConf.to_container(cfg, resolve=True))

    def wanted(k: str) -> bool:
        return any(k == p or k.startswith(p + ".") for p in keys)

    changed = sorted(k for k in old.keys() | new.keys() if wanted(k) and old.get(k) != new.get(k))
    return [f"{k}: {old.get(k)} -> {new.get(k)}" for k in changed]
