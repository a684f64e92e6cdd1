"""What changed between a checkpoint's stored config and the config in hand."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from dcvq.config import schema
from dcvq.config.schema import precision_on

#: keys that do not change what a training run computes, only how it is watched and fed
#: (data order does not depend on the number of loader workers), where weights are read,
#: what runs after it, and where it runs: numerics differ between devices by rounding,
#: which seeds swamp, while what runs there (``trainer.precision``) is compared by
#: :func:`as_run`. A re-launch and the report's grouping of seeds share this rule.
RESULT_NEUTRAL = (
    "logger",
    "trainer.device",
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


def run_dir_name(row: str, codebook_size: Any, overrides: Sequence[str]) -> str:
    """A multirun job's directory, named by its configuration: ``<row>_n<size>``, then
    the job's other overrides that can change results, sorted (``t128_s128_n512`` for a
    plain ``'quantizer=glob(*)'`` sweep, ``vq_n128,seed=1,trainer.lr=0.001`` in a study).
    The same command names the same runs however many options a group gains, so a
    re-launch finds each run where it left it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    named = ("quantizer", "codebook.size", "baseline")  # in ``<row>_n<size>`` already
    kept = []
    for text in overrides:
        key = OverridesParser.create().parse_override(text).key_or_group
        # a quantizer key (quantizer.rotation_trick=true) tells runs apart: only the
        # group choice itself is in the name already
        if not (key.startswith("hydra") or key in named or under(key, RESULT_NEUTRAL)):
            kept.append(text.replace("/", "%2F"))  # a path value is one directory
    return ",".join([f"{row}_n{codebook_size}", *sorted(kept)])


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


def declared_defaults(flat: dict[str, Any]) -> dict[str, Any]:
    """``flat`` with every key its groups declare and it lacks, at its declared default:
    a run written before a key existed ran with what became its default (a new key keeps
    the old behaviour as its default), so re-launches and the report's rows do not tell
    it apart from a run that has the key at that value. Declared: the trainer, eval, loss,
    model and dataset schemas' fields (dcvq.config.schema), and the quantizer class's
    constructor arguments (its ``_target_``)."""
    out = dict(flat)

    def fill(group: str, defaults: dict[str, Any]) -> None:
        for key, value in defaults.items():
            out.setdefault(f"{group}.{key}", value)

    groups = {"trainer": schema.TrainerSchema, "eval": schema.EvalSchema,
              "loss": schema.LossSchema, "model": schema.ModelSchema}  # fmt: skip
    option = schema.dataset_option(str(flat.get("dataset._target_", "")))
    if option is not None:
        groups["dataset"] = schema.DATASETS[option]
    for group, cls in groups.items():
        if not any(k.startswith(group + ".") for k in flat):
            continue  # a config without the group (an evaluate config's trainer)
        values = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
        fill(group, {k: v for k, v in values.items() if not isinstance(v, dict)})
    target = flat.get("quantizer._target_")
    if isinstance(target, str):
        try:
            params = inspect.signature(get_class(target)).parameters.values()
        except Exception:  # noqa: BLE001 - a class that is gone: nothing declared
            params = []
        fill("quantizer", {p.name: p.default for p in params if p.default is not p.empty})
    return out


def as_run(flat: dict[str, Any]) -> dict[str, Any]:
    """A flat config with ``trainer.precision`` as it runs on ``trainer.device``: ``auto``
    on the CPU is fp32, so a CPU run with the default equals a GPU run asked for fp32."""
    device_type = str(flat.get("trainer.device", "")).split(":")[0]
    if "trainer.precision" not in flat or device_type not in ("cpu", "cuda"):
        return flat
    return flat | {"trainer.precision": precision_on(flat["trainer.precision"], device_type)}


def _flat(cfg: DictConfig) -> dict[str, Any]:
    return flatten(OmegaConf.to_container(cfg, resolve=True))


def _changes(old: dict[str, Any], new: dict[str, Any], wanted: Callable[[str], bool]) -> list[str]:
    changed = sorted(k for k in old.keys() | new.keys() if wanted(k) and old.get(k) != new.get(k))
    return [f"{k}: {old.get(k)} -> {new.get(k)}" for k in changed]


def config_changes(saved_yaml: str, cfg: DictConfig, keys: Sequence[str]) -> list[str]:
    """``key: saved -> now`` for every leaf under ``keys`` (dotted keys or prefixes,
    e.g. ``model`` or ``eval.protocol``) whose value differs; ``saved_yaml`` is the
    config text a checkpoint stores."""
    if not saved_yaml:
        return []
    saved = OmegaConf.to_container(OmegaConf.create(saved_yaml))
    return _changes(flatten(saved), _flat(cfg), lambda k: under(k, keys))


def result_changes(
    saved: dict[str, Any], cfg: DictConfig, also_neutral: Sequence[str] = ()
) -> list[str]:
    """``key: saved -> now`` for every leaf of two resolved configs that can change a
    run's results (all but :data:`RESULT_NEUTRAL` and ``also_neutral``), with the
    precision compared as it runs (:func:`as_run`)."""
    neutral = (*RESULT_NEUTRAL, *also_neutral)
    old, new = (as_run(declared_defaults(f)) for f in (flatten(saved), _flat(cfg)))
    return _changes(old, new, lambda k: not under(k, neutral))
