"""What changed between a checkpoint's stored config and the config in hand."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config (plain dicts) as ``{dotted key: leaf value}``."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, sub in node.items():
        out |= flatten(sub, f"{prefix}.{key}" if prefix else str(key))
    return out


def under(key: str, prefixes: Sequence[str]) -> bool:
    """Whether the dotted ``key`` is one of ``prefixes`` or below one of them."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _changes(saved: dict[str, Any], cfg: DictConfig, wanted: Callable[[str], bool]) -> list[str]:
    old, new = flatten(saved), flatten(OmegaConf.to_container(cfg, resolve=True))
    changed = sorted(k for k in old.keys() | new.keys() if wanted(k) and old.get(k) != new.get(k))
    return [f"{k}: {old.get(k)} -> {new.get(k)}" for k in changed]


def config_changes(saved_yaml: str, cfg: DictConfig, keys: Sequence[str]) -> list[str]:
    """``key: saved -> now`` for every leaf under ``keys`` (dotted keys or prefixes,
    e.g. ``model`` or ``eval.protocol``) whose value differs; ``saved_yaml`` is the
    config text a checkpoint stores."""
    if not saved_yaml:
        return []
    saved = OmegaConf.to_container(OmegaConf.create(saved_yaml))
    return _changes(saved, cfg, lambda k: under(k, keys))


def result_changes(
    saved: dict[str, Any], cfg: DictConfig, also_neutral: Sequence[str] = ()
) -> list[str]:
    """``key: saved -> now`` for every leaf of two resolved configs that can change a
    run's results (all but :data:`RESULT_NEUTRAL` and ``also_neutral``)."""
    neutral = (*RESULT_NEUTRAL, *also_neutral)
    return _changes(saved, cfg, lambda k: not under(k, neutral))
