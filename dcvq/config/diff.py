"""What changed between a checkpoint's stored config and the config in hand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: keys that do not change what a training run computes, only how it is watched and fed
#: (data order does not depend on the number of loader workers), where weights are read
#: and what runs after it
RESULT_NEUTRAL = (
    "logger",
    "trainer.progress",
    "trainer.num_workers",
    "trainer.log_every",
    "trainer.ckpt_every",
    "trainer.dist_timeout_min",
    "trainer.resume",
    "loss.lpips_weights",
    "eval.lpips_weights",
    "eval.fid_weights",
    "prior",  # a stage after training: eval.json's prior section tells its own config
)


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


def result_changes(
    saved: dict[str, Any], cfg: DictConfig, also_neutral: Sequence[str] = ()
) -> list[str]:
    """``key: saved -> now`` for every leaf of two resolved configs that can change a
    run's results (all but :data:`RESULT_NEUTRAL` and ``also_neutral``)."""
    old = _flat(saved)
    new = _flat(OmegaConf.to_container(cfg, resolve=True))
    neutral = (*RESULT_NEUTRAL, *also_neutral)

    def wanted(k: str) -> bool:
        return not any(k == p or k.startswith(p + ".") for p in neutral)

    changed = sorted(k for k in old.keys() | new.keys() if wanted(k) and old.get(k) != new.get(k))
    return [f"{k}: {old.get(k)} -> {new.get(k)}" for k in changed]
