"""The ``prior`` config node: checked before anything runs, and turned into the model.

``prior=none`` composes to an empty node (no prior); every other option has a ``model``
node whose ``_target_`` names the prior's class (``dcvq.prior.model.TokenPrior``), which
receives the tokenizer's ``codebook_sizes`` and token ``grid`` on top of its config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig

from dcvq.config.validate import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")


def prior_enabled(prior_cfg: Any) -> bool:
    """Whether ``prior_cfg`` asks for a prior (``prior=none``: an empty node or None)."""
    return isinstance(prior_cfg, DictConfig) and "model" in prior_cfg


def check_prior_config(prior_cfg: Any) -> None:
    """Raises :class:`ConfigError` naming every bad ``prior.*`` key."""
    if not prior_enabled(prior_cfg):
        raise ConfigError(
            "prior: no prior chosen (prior=none); choose one, e.g. prior=tiny (CPU) or "
            "prior=gpt_b (GPU), from conf/prior/"
        )
    p = prior_cfg
    errors = []
    for key in ("max_steps", "batch_size", "eval_batch_size", "ckpt_every", "log_every"):
        if p[key] < 1:
            errors.append(f"prior.{key}={p[key]} must be >= 1")
    for key in ("max_train_images", "max_eval_images", "top_k"):
        if p[key] is not None and p[key] < 1:
            errors.append(f"prior.{key}={p[key]} must be >= 1 or null")
    if p.fid_images is not None and p.fid_images < 2:
        errors.append(f"prior.fid_images={p.fid_images}: FID needs at least 2 images (or null)")
    if p.grid_images < 0:
        errors.append(f"prior.grid_images={p.grid_images} must be >= 0")
    if p.lr <= 0 or p.weight_decay < 0 or p.warmup_steps < 0:
        errors.append(
            f"prior.lr={p.lr} must be > 0, prior.weight_decay={p.weight_decay} and "
            f"prior.warmup_steps={p.warmup_steps} >= 0"
        )
    if p.grad_clip is not None and p.grad_clip <= 0:
        errors.append(f"prior.grad_clip={p.grad_clip} must be > 0 or null (no clipping)")
    if p.temperature <= 0:
        errors.append(f"prior.temperature={p.temperature} must be > 0")
    if p.precision not in PRECISIONS:
        errors.append(f"prior.precision={p.precision!r}: use {', '.join(PRECISIONS)}")
    if p.dist_timeout_min <= 0:
        errors.append(f"prior.dist_timeout_min={p.dist_timeout_min} must be > 0")
    if not p.model.get("_target_"):
        errors.append("prior.model._target_ is not set: the prior's YAML names its class there")
    if errors:
        raise ConfigError("invalid prior configuration:\n  - " + "\n  - ".join(errors))


def build_prior(
    prior_cfg: DictConfig, codebook_sizes: Sequence[int], grid: Sequence[int], source: str
) -> Any:
    """The ``prior.model`` for a tokenizer with ``codebook_sizes`` and token ``grid``
    (``h, w``); ``source`` (the tokenizer checkpoint) is named when they do not fit."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(
            prior_cfg.model, codebook_sizes=list(codebook_sizes), grid=list(grid), _convert_="all"
        )
    except InstantiationException as e:
        cause = e.__cause__ or e
        if isinstance(cause, (ValueError, TypeError)):
            raise ConfigError(f"{cause} (tokenizer: {source})") from cause
        raise
