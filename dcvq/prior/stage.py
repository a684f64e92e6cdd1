"""The prior stage as one call: tokens, training, held-out bits per token, samples, FID.

:func:`run_prior` is what ``python -m dcvq.prior`` runs and what a training run calls
after its tokenizer is trained. Everything it writes goes to its run dir:
``checkpoints/prior.pt``, ``prior_train.jsonl``, ``samples.png`` and last, atomically,
``prior.json`` (its return value).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from dcvq.build import build_dataset, build_eval_loader
from dcvq.checkpoint import write_text_atomic
from dcvq.config.schema import EvalSchema
from dcvq.data import dataset_info
from dcvq.metrics.evaluator import Evaluator, versions
from dcvq.prior.config import build_prior, check_prior_config
from dcvq.prior.generation import generation_fid, write_samples
from dcvq.prior.likelihood import bits_per_token, uniform_bits
from dcvq.prior.tokens import Tokenizer
from dcvq.prior.train import CHECKPOINT, PriorTrainer
from dcvq.runtime.distributed import DistEnv, process_group, resolve_device

log = logging.getLogger(__name__)

ORDER = (
    "raster over the h x w positions; at each position the K codebooks' tokens in the "
    "quantizer's order (dual: global, then local); every token conditioned on all before it"
)
BITS_NOTE = (
    "bits_per_token: -log2 p per position of the token grid, the K codebooks' tokens summed, "
    "averaged over the held-out split's positions; bits_per_token_<codebook>: that "
    "codebook's tokens alone (they sum to bits_per_token)"
)


def _eval_node(eval_cfg: Any, tokenizer: Tokenizer) -> DictConfig:
    """The eval settings: given, else the tokenizer's training run's; LPIPS off (unused)."""
    node = eval_cfg if eval_cfg is not None else tokenizer.config.get("eval")
    merged = OmegaConf.merge(OmegaConf.structured(EvalSchema), node or {})
    merged.lpips = False
    return merged


def _fid_evaluator(e: DictConfig, device: torch.device) -> tuple[Evaluator | None, dict]:
    """The Inception, loaded as reconstruction FID loads it (a missing file: an error
    with instructions, or with ``eval.missing_weights=skip`` a reason), before training."""
    if not e.fid:
        return None, {"fid": "eval.fid=false"}
    evaluator = Evaluator.from_config(e, device)
    if evaluator.inception is None:
        return None, evaluator.not_measured
    return evaluator, {}


def run_prior(
    prior_cfg: DictConfig,
    checkpoint_path: str | Path,
    run_dir: str | Path,
    eval_cfg: DictConfig | None = None,
    device: str | torch.device = "auto",
    *,
    dataset_cfg: DictConfig | None = None,
    num_workers: int | str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """Train and evaluate a prior on the tokens of the dcvq checkpoint ``checkpoint_path``.

    ``prior_cfg``: the ``prior`` node (conf/prior/). ``eval_cfg``: an ``eval`` node
    (protocol, fid, fid_weights, missing_weights); None: the checkpoint's training run's.
    ``dataset_cfg``: a ``dataset`` node; None: the checkpoint's. ``device``: ``auto``,
    ``cpu``, ``cuda`` (under torchrun: ``cuda:LOCAL_RANK``) or a torch device. Joins the
    process group when ``WORLD_SIZE > 1`` (leaving it at the end if it created it).

    Returns the content of ``<run_dir>/prior.json`` on rank 0, ``{}`` on other ranks.
    Bad input raises before any work: a missing or non-dcvq checkpoint (names the
    path), a bad ``prior.*`` key or a prior that does not fit the tokenizer
    (:class:`~dcvq.config.ConfigError` naming the key).
    """
    check_prior_config(prior_cfg)
    p, run_dir = prior_cfg, Path(run_dir)
    with process_group(device, p.dist_timeout_min) as env:
        if isinstance(device, str):
            device = resolve_device(device, env, "device")
        return _run(p, checkpoint_path, run_dir, eval_cfg, device, env, dataset_cfg,
                    num_workers, progress)  # fmt: skip


def _run(
    p: DictConfig,
    checkpoint_path: str | Path,
    run_dir: Path,
    eval_cfg: DictConfig | None,
    device: torch.device,
    env: DistEnv,
    dataset_cfg: DictConfig | None,
    num_workers: int | str,
    progress: bool,
) -> dict[str, Any]:
    tokenizer = Tokenizer.load(checkpoint_path, device)
    e = _eval_node(eval_cfg, tokenizer)
    evaluator, not_measured = _fid_evaluator(e, device) if env.is_main else (None, {})
    data = OmegaConf.create(
        {"dataset": dataset_cfg if dataset_cfg is not None else tokenizer.config.dataset}
    )
    train_ds = build_dataset(data, data.dataset.train_split, training=False)
    val_ds = build_dataset(data, data.dataset.split, training=False)

    def loader(ds):
        return build_eval_loader(ds, p.eval_batch_size, num_workers, device)

    show = progress and env.is_main
    train_grids = tokenizer.encode(loader(train_ds), p.max_train_images, show)
    val_grids = tokenizer.encode(loader(val_ds), p.max_eval_images, show)
    grid = list(train_grids.shape[-2:])
    if list(val_grids.shape[-2:]) != grid:
        raise ValueError(
            f"the held-out split {data.dataset.split} gives {list(val_grids.shape[-2:])} token "
            f"grids, the training split {grid}: set one dataset.resolution for both"
        )
    names, sizes = tokenizer.codebook_names, tokenizer.codebook_sizes
    tokens = tokenizer.describe() | {
        "codebook_names": list(names), "codebook_sizes": list(sizes), "grid": grid,
    }  # fmt: skip
    # Same seed on every rank: identical initial weights and dropout masks.
    torch.manual_seed(p.seed)
    model = build_prior(p, sizes, grid, source=str(tokenizer.path))
    trainer = PriorTrainer(model, p, run_dir, device, env, tokens)
    log.info(
        "prior: %d parameters, %d training and %d held-out token grids of %s x %d codebook(s) "
        "from %s (step %d)",
        sum(q.numel() for q in model.parameters()), len(train_grids), len(val_grids),
        " x ".join(map(str, grid)), len(names), tokenizer.path, tokenizer.step,
    )  # fmt: skip
    speed = trainer.fit(train_grids, progress=show)
    if not env.is_main:
        torch.distributed.barrier()
        return {}
    results = _evaluate(p, model, tokenizer, val_grids, names, e, evaluator, not_measured,
                        loader(val_ds), run_dir, device)  # fmt: skip
    results |= {
        "steps": trainer.step,
        "n_params": sum(q.numel() for q in model.parameters()),
        "uniform_bits_per_token": uniform_bits(sizes),
        "n_train_sequences": len(train_grids),
        "n_val_sequences": len(val_grids),
        "tokens_per_sequence": int(val_grids[0].numel()),
        "sequence": {"order": ORDER}
        | {k: tokens[k] for k in ("codebook_names", "codebook_sizes", "grid")},
        "tokenizer": tokenizer.describe(),
        "split": data.dataset.split,
        "train_split": data.dataset.train_split,
        "data": dataset_info(val_ds),
        "train_tokens_per_s": speed["tokens_per_s"],
        "prior": OmegaConf.to_container(p, resolve=True),
        "checkpoint": str(run_dir / CHECKPOINT),
        "versions": versions(),
    }
    write_text_atomic(run_dir / "prior.json", json.dumps(results, indent=1))
    fid = "not measured" if results["fid"] is None else f"{results['fid']:.2f}"
    log.info(
        "prior at step %d: %.4f bits per token (uniform %.2f) on %s, generation FID %s -> %s",
        trainer.step, results["bits_per_token"], results["uniform_bits_per_token"],
        data.dataset.split, fid, run_dir / "prior.json",
    )  # fmt: skip
    if env.enabled:
        torch.distributed.barrier()
    return results


def _evaluate(
    p: DictConfig,
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    val_grids: torch.Tensor,
    names: tuple[str, ...],
    e: DictConfig,
    evaluator: Evaluator | None,
    not_measured: dict[str, str],
    held_out: Any,
    run_dir: Path,
    device: torch.device,
) -> dict[str, Any]:
    """Held-out bits per token, ``samples.png`` and generation FID (rank 0). Sampling has
    its own generators: the global RNG stays as training left it."""
    results = bits_per_token(model, val_grids, names, p.eval_batch_size, device)
    results["bits_per_token_note"] = BITS_NOTE
    gen = torch.Generator(device).manual_seed(p.seed)
    if p.grid_images:
        write_samples(model, tokenizer, p.grid_images, run_dir / "samples.png", gen,
                      p.temperature, p.top_k)  # fmt: skip
    fid, n_fid = None, 0
    if evaluator is not None:
        gen = torch.Generator(device).manual_seed(p.seed + 1)
        cap = p.fid_images if p.fid_images is not None else p.max_eval_images
        fid, n_fid = generation_fid(model, tokenizer, held_out, cap, evaluator, gen,
                                    p.temperature, p.top_k)  # fmt: skip
        if fid is None:
            not_measured = {"fid": f"FID needs at least 2 held-out images, got {n_fid}"}
    return results | {
        "fid": fid,
        "fid_images": n_fid,
        "protocol": e.protocol,
        "weights": evaluator.weights if evaluator is not None else {},
        "not_measured": not_measured,
        "samples": "samples.png" if p.grid_images else None,
        "sampling": {"temperature": p.temperature, "top_k": p.top_k, "seed": p.seed},
    }


#: the keys of ``prior.json`` that a training run's eval.json repeats in its ``prior``
#: section (and wandb and the report show as ``prior/<key>``)
SUMMARY_KEYS = ("bits_per_token", "uniform_bits_per_token", "steps", "n_params", "fid")


def prior_summary(results: dict[str, Any]) -> dict[str, Any]:
    """The ``prior`` section of eval.json: :data:`SUMMARY_KEYS`, each codebook's
    ``bits_per_token_<name>``, and the prior's config (to tell a stale section)."""
    keys = [*SUMMARY_KEYS, *(k for k in results if k.startswith("bits_per_token_"))]
    return {k: results.get(k) for k in keys if k != "bits_per_token_note"} | {
        "prior": results["prior"],
        "run_dir": results.get("run_dir"),
    }


def prior_after_training(cfg: DictConfig, run_dir: str | Path, logger: Any = None) -> dict:
    """``train.py ... prior=<size>``: the prior stage on the run's final checkpoint, into
    ``<run_dir>/prior/``; its summary becomes eval.json's ``prior`` section and is logged
    as ``prior/<key>`` at the tokenizer's last step (on a re-launch of a finished run
    whose section belongs to this prior config, nothing runs). Called on every rank (a
    DDP run trains its prior with all of them); returns the section on rank 0, else {}.
    """
    run_dir = Path(run_dir)
    eval_json = run_dir / "eval.json"
    results = json.loads(eval_json.read_text())
    wanted = OmegaConf.to_container(cfg.prior, resolve=True)
    if (results.get("prior") or {}).get("prior") == wanted:
        log.info("%s has this prior's results already: nothing to train", eval_json)
        return results["prior"]
    out = run_prior(
        cfg.prior,
        run_dir / "checkpoints" / "last.pt",
        run_dir / "prior",
        cfg.eval,
        cfg.trainer.device,
        num_workers=cfg.trainer.num_workers,
        progress=cfg.trainer.progress,
    )
    if not out:  # not rank 0
        return {}
    section = prior_summary(out | {"run_dir": "prior"})
    results["prior"] = section
    write_text_atomic(eval_json, json.dumps(results, indent=1))
    if logger is not None:
        step = int(results["step"])
        logger.start(OmegaConf.to_container(cfg, resolve=True), run_dir, step)
        try:
            numbers = {k: v for k, v in section.items() if isinstance(v, (int, float))}
            logger.log_metrics({f"prior/{k}": float(v) for k, v in numbers.items()}, step)
            samples = run_dir / "prior" / "samples.png"
            if samples.is_file():
                logger.log_image("prior/samples", samples, step)
        finally:
            logger.finish()
    return section
