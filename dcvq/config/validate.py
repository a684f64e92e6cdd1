"""Cross-key checks a schema cannot express; run before anything is built."""

from __future__ import annotations

from omegaconf import DictConfig


class ConfigError(ValueError):
    """A config that composes but cannot work; the message names the keys."""


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


def validate(cfg: DictConfig) -> None:
    errors: list[str] = []
    size = _get(cfg, "codebook.size")
    if size is not None and size < 2:
        errors.append(f"codebook.size={size}: a codebook needs at least 2 codes")
    embed = _get(cfg, "model.embed_dim")
    q = _get(cfg, "quantizer", {})
    if "global_dim" in q:
        g, loc = q.global_dim, q.local_dim
        if g < 1 or loc < 1:
            errors.append(f"quantizer.global_dim={g}, quantizer.local_dim={loc}: both must be >= 1")
        if embed is not None and g + loc != embed:
            errors.append(
                f"quantizer.global_dim + quantizer.local_dim = {g} + {loc} = {g + loc} "
                f"must equal model.embed_dim={embed}"
            )
        if q.get("global_transformer") and g % q.transformer_heads:
            errors.append(
                f"quantizer.transformer_heads={q.transformer_heads} must divide "
                f"quantizer.global_dim={g}"
            )
    elif "dim" in q and embed is not None and q.dim != embed:
        errors.append(f"quantizer.dim={q.dim} must equal model.embed_dim={embed}")
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
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
