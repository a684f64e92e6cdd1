"""Cross-key checks a schema cannot express; run before anything is built.

The quantizer is checked against what its class declares, whatever the class: the YAML's
keys against the constructor's signature, and the latent width against ``model.embed_dim``
from the ``dim`` of an instance built on the meta device (no memory, no RNG draws).
"""

from __future__ import annotations

import inspect
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dcvq.errors import ConfigError, UserError


def _get(cfg: DictConfig, key: str, default=None):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return default
        node = node[part]
    return node


def _num_workers_errors(value: object, key: str) -> list[str]:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return []
    return [f"{key}={value!r}: use auto or a number of data-loader workers >= 0"]


def _arguments(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword arguments of ``cls(...)``, and whether it also takes ``**kwargs``."""
    params = inspect.signature(cls).parameters
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = {name: p for name, p in params.items() if p.kind in kinds}
    return named, any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())


def _build_on_meta(q: DictConfig) -> Any:
    """The quantizer ``q`` describes, its tensors on the meta device; a constructor the
    meta device cannot run (e.g. an init that reads values) builds on the CPU instead.
    Raises the constructor's own exception, not Hydra's wrapper."""
    import torch
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    def build(device: str) -> Any:
        try:
            with torch.device(device):
                return instantiate(q, _convert_="all")
        except InstantiationException as e:
            raise (e.__cause__ or e) from None

    try:
        return build("meta")
    except (ValueError, TypeError):  # the arguments, not the device
        raise
    except Exception:  # noqa: BLE001 - an op without a meta kernel
        return build("cpu")


def quantizer_errors(q: DictConfig, embed: int | None) -> list[str]:
    """What is wrong with the ``quantizer`` node ``q``, read from the class its
    ``_target_`` names: keys the constructor does not take, arguments it needs and nobody
    sets, the constructor's own errors, and a ``dim`` other than ``embed``
    (``model.embed_dim``)."""
    from hydra.utils import get_class

    from dcvq.quantizers.base import Quantizer

    target = q.get("_target_")
    if not target:
        return ["quantizer._target_ is not set: the quantizer's YAML names its class there"]
    try:
        cls = get_class(str(target))
    except Exception as e:  # noqa: BLE001 - whatever the import raised, said as one error
        return [
            f"quantizer._target_={target}: cannot import it ({type(e).__name__}: {e}); "
            "is its module installed or on PYTHONPATH?"
        ]
    if not issubclass(cls, Quantizer):
        return [f"quantizer._target_={target}: not a subclass of dcvq.quantizers.Quantizer"]
    named, any_kwargs = _arguments(cls)
    keys = [k for k in q if not (k.startswith("_") and k.endswith("_"))]  # not _target_
    errors = [
        f"quantizer.{k}: {target} has no argument {k!r} (it takes: {', '.join(named)})"
        for k in keys
        if k not in named and not any_kwargs
    ]
    errors += [
        f"quantizer.{name}: {target} requires it; set it in the quantizer's YAML "
        f"(or +quantizer.{name}=... on the command line)"
        for name, p in named.items()
        if p.default is inspect.Parameter.empty and (name not in q or OmegaConf.is_missing(q, name))
    ]
    if errors:
        return errors
    try:
        dim = getattr(_build_on_meta(q), "dim", None)
        if not isinstance(dim, int):
            return [f"{target}: sets no integer self.dim (the latent channels it quantizes)"]
    except Exception as e:  # noqa: BLE001 - a constructor names its keys in its ValueErrors
        errors.append(f"{target}: {e}" if isinstance(e, ValueError) else f"{target}: {e!r}")
        dim = None
    if embed is None:
        return errors
    # The arguments the class declares to sum to dim: the message names them, and they
    # give dim even when the constructor refused another argument.
    parts = [q.get(k) for k in cls.dim_keys if k in q]
    declared = len(parts) == len(cls.dim_keys) and all(type(v) is int for v in parts)
    if declared and dim in (None, sum(parts)):
        if sum(parts) != embed:
            names = " + ".join(f"quantizer.{k}" for k in cls.dim_keys)
            values = " + ".join(map(str, parts))
            total = sum(parts)
            shown = f"{names}={total}" if len(parts) == 1 else f"{names} = {values} = {total}"
            errors.append(f"{shown} must equal model.embed_dim={embed}")
        return errors
    if dim is not None and dim != embed:
        errors.append(f"{target}: dim={dim} (its latent width) must equal model.embed_dim={embed}")
    return errors


def _raised_in_resolver(error: BaseException | None) -> UserError | None:
    """The UserError a resolver raised: OmegaConf re-raises it as the context (not the
    cause) of its own InterpolationResolutionError."""
    while error is not None and not isinstance(error, UserError):
        error = error.__cause__ or error.__context__
    return error


#: the groups resolved up front (the logger's names read Hydra's runtime, set only in a run)
RESOLVED = ("model", "quantizer", "codebook", "loss", "dataset", "trainer", "eval")


def validate(cfg: DictConfig) -> None:
    # A value the command line must set (${dcvq.required:...}) fails here, before anything
    # is built or a run directory is written to.
    for key in RESOLVED:
        if isinstance(cfg.get(key), DictConfig):
            try:
                OmegaConf.to_container(cfg[key], resolve=True)
            except OmegaConfBaseException as e:
                error = _raised_in_resolver(e)
                if error is None:
                    raise
                raise error from None
    errors: list[str] = []
    size = _get(cfg, "codebook.size")
    if size is not None and size < 2:
        errors.append(f"codebook.size={size}: a codebook needs at least 2 codes")
    embed = _get(cfg, "model.embed_dim")
    q = _get(cfg, "quantizer")
    if isinstance(q, DictConfig) and len(q):
        errors += quantizer_errors(q, embed)
    t = _get(cfg, "trainer")
    if t is not None:
        for key in ("batch_size", "accumulate", "max_steps", "eval_every", "ckpt_every",
                    "log_every", "eval_batch_size"):  # fmt: skip
            if t[key] < 1:
                errors.append(f"trainer.{key}={t[key]} must be >= 1")
        if t.precision not in ("auto", "fp32", "bf16", "fp16"):
            errors.append(f"trainer.precision={t.precision!r}: use auto, fp32, bf16 or fp16")
        if t.get("dist_timeout_min", 1) <= 0:
            errors.append(f"trainer.dist_timeout_min={t.dist_timeout_min} must be > 0")
        if t.get("lr_schedule", "constant") not in ("constant", "cosine"):
            errors.append(f"trainer.lr_schedule={t.lr_schedule!r}: use constant or cosine")
        if t.get("warmup_steps", 0) < 0:
            errors.append(f"trainer.warmup_steps={t.warmup_steps}: use a number >= 0")
        if t.get("on_collapse", "warn") not in ("warn", "stop", "rollback"):
            errors.append(f"trainer.on_collapse={t.on_collapse!r}: use warn, stop or rollback")
        if not 0 < t.get("collapse_lr_factor", 0.3) < 1:
            errors.append(
                f"trainer.collapse_lr_factor={t.collapse_lr_factor}: use a factor in (0, 1) "
                "(the codebook's rate after a rollback)"
            )
        if t.get("max_rollbacks", 0) < 0:
            errors.append(f"trainer.max_rollbacks={t.max_rollbacks} must be >= 0")
        if t.get("codebook_lr_mult", 1.0) <= 0:
            errors.append(f"trainer.codebook_lr_mult={t.codebook_lr_mult} must be > 0")
        if t.get("compile", "none") not in ("none", "codebook", "model"):
            errors.append(f"trainer.compile={t.compile!r}: use none, codebook or model")
        errors += _num_workers_errors(t.get("num_workers", 0), "trainer.num_workers")
    if "num_workers" in cfg:  # python -m dcvq.evaluate
        errors += _num_workers_errors(cfg.get("num_workers", 0), "num_workers")
    missing = _get(cfg, "eval.missing_weights")
    if missing is not None and missing not in ("error", "skip"):
        errors.append(f"eval.missing_weights={missing!r}: use error or skip")
    protocol = _get(cfg, "eval.protocol")
    if protocol is not None and protocol not in ("clean", "vqct"):
        errors.append(f"eval.protocol={protocol!r}: use clean or vqct")
    model = _get(cfg, "model")
    if model is not None and any(m < 1 for m in model.ch_mult):
        errors.append(f"model.ch_mult={list(model.ch_mult)}: multipliers must be >= 1")
    if model is not None and model.ch % 32:
        # conv_in gives ch channels and every level ch * mult: GroupNorm(32) needs ch % 32
        errors.append(f"model.ch={model.ch}: must be a multiple of 32 (GroupNorm(32))")
    resolution = _get(cfg, "dataset.resolution")
    # one stride-2 level per multiplier but the last; other sizes come back cropped
    factor = 2 ** (len(model.ch_mult) - 1) if model is not None else 1
    if isinstance(resolution, int) and resolution % factor:
        errors.append(
            f"dataset.resolution={resolution}: must be a multiple of {factor}, the model's "
            f"downsampling (model.ch_mult has {len(model.ch_mult)} levels)"
        )
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
