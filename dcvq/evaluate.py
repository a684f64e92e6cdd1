"""Evaluate a checkpoint: ``python -m dcvq.evaluate checkpoint=PATH [dataset...] [eval.*]``.

Data and evaluation settings are the checkpoint's training run's unless the command line
sets them: the dataset option and its keys (resolution, split, root, crop policy, ...),
``eval.protocol`` and ``eval.missing_weights``. FID and LPIPS are on (off during
training), over the whole split (``eval.max_images`` caps it). With
``dataset=<another option>`` only the training's preprocessing (resolution, crop policy,
interpolation) is kept.

Writes a comparison grid, optionally the reconstructions, ``per_image.csv`` (each image's
metrics, for paired comparisons) and last ``eval.json`` (the format of training's final
evaluation), atomically: an ``eval.json`` is a finished evaluation. A stop signal
(SIGTERM, SIGUSR1/2, SIGINT, SIGHUP) ends the evaluation with exit status 128 + signal
and no ``eval.json``; reconstructions written so far stay in ``reconstructions.partial/``.
A handler installed before (submitit's, in a Slurm job) is handed the signal first: on
USR2 it requeues the job (:mod:`dcvq.runtime.stop`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dcvq.build import build_dataset, build_eval_loader, model_from_checkpoint
from dcvq.checkpoint import read_checkpoint, write_text_atomic
from dcvq.config import CONF_DIR, register
from dcvq.config.diff import config_changes
from dcvq.config.schema import dataset_option
from dcvq.config.validate import validate
from dcvq.data import dataset_info
from dcvq.data.workers import preemption_signals
from dcvq.errors import reported
from dcvq.images import save_reconstruction_grid
from dcvq.metrics.evaluator import Evaluator, write_per_image
from dcvq.runtime.cpus import configure_threads
from dcvq.runtime.distributed import DistEnv, resolve_device
from dcvq.runtime.stop import Stopped, StopSignals

log = logging.getLogger(__name__)

# Data and protocol settings that change the numbers (the split and root may differ).
COMPARED_KEYS = tuple(
    f"dataset.{k}" for k in ("_target_", "resolution", "policy", "interpolation", "layout", "year")
) + ("eval.protocol",)
# The eval keys a training run fixes for its checkpoint. Not taken: fid/lpips (off in
# training for speed, on here), max_images (a cap for training's evaluations: the whole
# split here), weight paths (they belong to a machine, not to a run).
EVAL_FROM_TRAINING = ("protocol", "missing_weights")
# What the model saw of its images: kept when another dataset option is evaluated.
PREPROCESSING_KEYS = ("resolution", "policy", "interpolation")


def _user_keys(overrides: Sequence[str]) -> set[str]:
    """The config keys a command line sets (``dataset=coco`` chooses an option: ``dataset``
    is not among them, its keys are not set by it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = set()
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        if o.key_or_group != "dataset" and not o.key_or_group.startswith("hydra"):
            keys.add(o.key_or_group)
    return keys


def settings_from_training(
    cfg: DictConfig, saved: DictConfig, overrides: Sequence[str]
) -> list[str]:
    """Sets, in ``cfg``, the training run's (``saved``) data and eval settings that
    ``overrides`` leave unset; returns ``key=value`` for each value that changed."""
    user = _user_keys(overrides)

    def set_by_user(key: str) -> bool:
        return any(key == k or key.startswith(k + ".") for k in user)

    taken = []

    def take(node: DictConfig, source: Any, keys: Sequence[str], prefix: str) -> None:
        for k in keys:
            if k not in source or k not in node or set_by_user(f"{prefix}.{k}"):
                continue
            if node[k] != source[k]:
                node[k] = source[k]
                taken.append(f"{prefix}.{k}={source[k]}")

    data = saved.get("dataset")
    if isinstance(data, DictConfig):
        same = data.get("_target_") == cfg.dataset.get("_target_")
        keys = [k for k in data if k != "_target_"] if same else PREPROCESSING_KEYS
        take(cfg.dataset, data, keys, "dataset")
    if isinstance(saved.get("eval"), DictConfig):
        take(cfg.eval, saved.eval, EVAL_FROM_TRAINING, "eval")
    return taken


def evaluate_checkpoint(
    cfg: DictConfig,
    run_dir: str | Path,
    overrides: Sequence[str] | None = None,
    stops: StopSignals | None = None,
) -> dict[str, Any]:
    """Evaluate ``cfg.checkpoint`` (a composed ``evaluate`` config) into ``run_dir``.

    ``overrides``: the overrides ``cfg`` was composed with (the command line). Given,
    every data and eval setting they leave unset is taken from the checkpoint's training
    run (:func:`settings_from_training`); None: ``cfg`` is used as it is. ``stops``: the
    entry point's :class:`~dcvq.runtime.stop.StopSignals` (a safe point after each batch,
    received whole).
    """
    run_dir = Path(run_dir)
    state = read_checkpoint(cfg.checkpoint)
    saved = OmegaConf.create(state.get("config") or "{}")
    taken = settings_from_training(cfg, saved, overrides) if overrides is not None else []
    if taken:
        log.info("from the checkpoint's training run: %s", ", ".join(taken))
    validate(cfg)
    device = resolve_device(cfg.device, DistEnv(), key="device")
    model = model_from_checkpoint(state).to(device).eval()
    step = int(state["step"])
    del state  # the optimisers' state is not needed
    # Scoring a checkpoint under other data settings than it was trained and evaluated
    # with is allowed (another split, another protocol), but must not pass unnoticed:
    # said before the evaluation, which can take long.
    changed = config_changes(OmegaConf.to_yaml(saved), cfg, COMPARED_KEYS)
    if changed:
        log.warning("settings differ from the checkpoint's training run: %s", "; ".join(changed))
    dataset = build_dataset(cfg, cfg.dataset.split, training=False)
    loader = build_eval_loader(dataset, cfg.batch_size, cfg.num_workers, device)
    if stops is not None:
        loader = stops.batches(loader)
    e = cfg.eval
    partial = run_dir / "reconstructions.partial"  # renamed once the evaluation is complete
    results = Evaluator.from_config(e, device)(
        model,
        loader,
        max_images=e.max_images,
        progress=cfg.progress,
        split=cfg.dataset.split,
        reconstructions_dir=partial if e.save_reconstructions else None,
        per_image=True,
    )
    per_image = results.pop("per_image")
    results |= {
        "checkpoint": str(cfg.checkpoint),
        "step": step,
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "data": dataset_info(dataset),
        "from_training": taken,
        "differs_from_training": changed,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    batch = next(iter(loader)).images[: cfg.grid_images].to(device)
    with torch.no_grad():
        save_reconstruction_grid(batch, model(batch)[0], run_dir / "grid.png")
    if e.save_reconstructions:
        os.replace(partial, run_dir / "reconstructions")
    write_per_image(run_dir / "per_image.csv", [(cfg.dataset.split, per_image)])
    write_text_atomic(run_dir / "eval.json", json.dumps(results, indent=1))
    fid = "not measured" if results["fid"] is None else f"{results['fid']:.2f}"
    log.info(
        "%s: PSNR %.2f, FID %s, %d images -> %s",
        cfg.dataset.split,
        results["psnr"],
        fid,
        results["n_images"],
        run_dir / "eval.json",
    )
    return results


register()


def checkpoint_dataset_override(argv: Sequence[str]) -> list[str]:
    """``dataset=<the checkpoint's option>`` when the command line names none: Hydra
    composes the dataset option before the checkpoint is read."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, checkpoint = OverridesParser.create(), None
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            o = parser.parse_override(arg)
        except Exception:
            return []  # Hydra reports it
        if o.key_or_group == "dataset":
            return []
        if o.key_or_group == "checkpoint":
            checkpoint = str(o.value())
    if checkpoint is None:
        return []
    try:
        state = read_checkpoint(checkpoint, mmap=True)  # the config only: nothing is read
    except Exception:
        return []  # evaluate_checkpoint reports it, with the run's logging
    saved = OmegaConf.create(state.get("config") or "{}")
    option = dataset_option(str(OmegaConf.select(saved, "dataset._target_", default="")))
    return [f"dataset={option}"] if option else []


def stop_signals() -> list[int]:
    """What stops an evaluation: Slurm's signals (the requeue signal first), then a
    user's SIGINT, SIGHUP and SIGUSR1."""
    others = [getattr(signal, n) for n in ("SIGINT", "SIGHUP", "SIGUSR1") if hasattr(signal, n)]
    first = preemption_signals()
    return [*first, *(sig for sig in others if sig not in first)]


def main() -> None:
    # At once: there is nothing to checkpoint, and a model build or FID reference
    # statistics can take minutes. A batch under way is received whole first.
    with StopSignals(stop_signals(), at_once=True) as stops:

        @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
        def run(cfg: DictConfig) -> None:
            configure_threads()
            hydra_cfg = HydraConfig.get()
            out_dir = Path(hydra_cfg.runtime.output_dir)
            with reported(out_dir, f"{hydra_cfg.job.name}.log"):
                try:
                    evaluate_checkpoint(
                        cfg, hydra_cfg.runtime.output_dir, hydra_cfg.overrides.task, stops
                    )
                except Exception:
                    # A loader worker that died of the same signal can fail the loader first.
                    stops.check()
                    raise

        try:
            sys.argv[1:] = [*checkpoint_dataset_override(sys.argv[1:]), *sys.argv[1:]]
            run()
        except Stopped as s:
            name = signal.Signals(s.signum).name
            log.error("stopped by %s before the evaluation finished: no eval.json written", name)
            stops.hand_on(s.signum)
            sys.exit(128 + s.signum)  # the previous handler returned: the evaluation is lost


if __name__ == "__main__":
    main()
