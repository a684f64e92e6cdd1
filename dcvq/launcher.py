"""Checks of a sweep's launcher settings (``hydra/launcher=slurm_a100|slurm_local|local``)
before submission: a mistake costs a message, not a queue wait and a failed job array."""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dcvq.config.validate import ConfigError, validate

log = logging.getLogger(__name__)

KEY = "hydra.launcher"
# launch/local_slurm.sh keeps its cluster in $DCVQ_SLURM_DIR (this default) and writes
# slurm.conf there; hydra/launcher=slurm_local is that cluster.
LOCAL_SLURM_DIR = "/tmp/dcvq-slurm"


def local_slurm_conf(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Points Slurm's clients at launch/local_slurm.sh's cluster; returns an error or None.

    ``SLURM_CONF`` set by the user wins. Otherwise ``$DCVQ_SLURM_DIR/slurm.conf`` (as
    ``local_slurm.sh up`` wrote it) goes into ``environ``: sbatch, squeue and the jobs
    (sbatch exports the environment, scontrol requeue runs in them) all read it there.
    """
    if environ.get("SLURM_CONF"):
        return None
    conf = Path(environ.get("DCVQ_SLURM_DIR") or LOCAL_SLURM_DIR) / "slurm.conf"
    if not conf.is_file():
        return (
            f"hydra/launcher=slurm_local: no local Slurm cluster ({conf} does not exist) and "
            "SLURM_CONF is not set; start one with `launch/local_slurm.sh up` as root (sudo "
            "where needed; in $DCVQ_SLURM_DIR if you set it, default /tmp/dcvq-slurm) or set "
            "SLURM_CONF"
        )
    environ["SLURM_CONF"] = str(conf)
    log.info("hydra/launcher=slurm_local: using the cluster of launch/local_slurm.sh (%s)", conf)
    return None


def launcher_errors(params: Any, slurm: bool) -> list[str]:
    """Problems of submitit launcher parameters (``hydra.launcher.*``)."""
    errors = []
    for name in ("nodes", "tasks_per_node", "timeout_min"):
        value = params.get(name)
        if value is not None and value < 1:
            errors.append(f"{KEY}.{name}={value} must be >= 1")
    gpus, tasks = params.get("gpus_per_node") or 0, params.get("tasks_per_node") or 1
    if gpus < 0:
        errors.append(f"{KEY}.gpus_per_node={gpus} must be >= 0")
    if gpus > 0 and tasks != gpus:
        # one task on several GPUs would train on cuda:0 alone and leave the rest idle
        errors.append(
            f"{KEY}.tasks_per_node={tasks} with {KEY}.gpus_per_node={gpus}: DDP runs one "
            f"process per GPU; set tasks_per_node={gpus} (or gpus_per_node={tasks})"
        )
    if not slurm and (params.get("nodes") or 1) != 1:
        errors.append(f"{KEY}.nodes={params['nodes']}: the local launcher has one machine")
    if slurm:
        if (params.get("max_num_timeout") or 0) < 1:
            errors.append(
                f"{KEY}.max_num_timeout={params.get('max_num_timeout')}: a timed-out job "
                "would not be requeued; use >= 1"
            )
        if (params.get("signal_delay_s") or 0) < 30:
            errors.append(
                f"{KEY}.signal_delay_s={params.get('signal_delay_s')}: leave at least 30 s "
                "between the signal and the kill for the checkpoint"
            )
    return errors


class LauncherCheck(Callback):
    """Hydra callback (``hydra.callbacks.check_launcher`` in conf/train.yaml).

    Runs in the submitting process before the launcher submits anything. Hydra turns a
    callback's exceptions into warnings, so this one logs the problems and exits.
    (Each job's config is composed by Hydra's sweeper before launching, so unknown keys
    and wrong types in swept values fail before submission too.)
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.launcher
        target = str(launcher.get("_target_", ""))
        errors: list[str] = []
        if target.endswith(("SlurmLauncher", "LocalLauncher")):
            errors += launcher_errors(launcher, slurm=target.endswith("SlurmLauncher"))
        choices = config.hydra.get("runtime", {}).get("choices", {})
        if choices.get("hydra/launcher") == "slurm_local" and (error := local_slurm_conf()):
            errors.append(error)
        try:
            validate(config)  # what every job shares, checked once here
        except ConfigError as e:
            errors.append(str(e))
        if errors:
            log.error("sweep not submitted:\n  - %s", "\n  - ".join(errors))
            raise SystemExit(1)
