"""Checks of a sweep's launcher settings (``hydra/launcher=slurm_a100|slurm_local|local``)
before submission: a mistake costs a message, not a queue wait and a failed job array."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

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


def local_slurm_nodes(conf: str | os.PathLike) -> int | None:
    """How many nodes the cluster of launch/local_slurm.sh in ``conf`` has; None for a
    slurm.conf that script did not write (a real cluster's node lines are hostlists)."""
    try:
        lines = Path(conf).read_text().splitlines()
    except OSError:
        return None
    if not lines or not lines[0].startswith("# Written by launch/local_slurm.sh"):
        return None
    return sum(line.startswith("NodeName=") for line in lines)


def gres_gpus(gres: str | None) -> int:
    """GPUs per node asked for through ``gres`` (``gpu:8``, ``gpu:a100:8``), else 0."""
    for item in (gres or "").split(","):
        kind, *rest = item.strip().split(":")
        if kind == "gpu":
            return int(rest[-1]) if rest and rest[-1].isdigit() else 1
    return 0


def launcher_errors(params: Any, slurm: bool) -> list[str]:
    """Problems of submitit launcher parameters (``hydra.launcher.*``)."""
    errors = []
    for name in ("nodes", "tasks_per_node", "timeout_min"):
        value = params.get(name)
        if value is not None and value < 1:
            errors.append(f"{KEY}.{name}={value} must be >= 1")
    gpus, tasks = params.get("gpus_per_node") or 0, params.get("tasks_per_node") or 1
    asked = f"{KEY}.gpus_per_node={gpus}"
    if slurm and not gpus and gres_gpus(params.get("gres")):
        # GPUs asked for as a generic resource count the same
        gpus = gres_gpus(params.get("gres"))
        asked = f"{KEY}.gres={params['gres']} ({gpus} GPUs per node)"
    if gpus < 0:
        errors.append(f"{KEY}.gpus_per_node={gpus} must be >= 0")
    if gpus > 0 and tasks != gpus:
        # one task on several GPUs would train on cuda:0 alone and leave the rest idle
        errors.append(
            f"{KEY}.tasks_per_node={tasks} with {asked}: DDP runs one process per GPU; "
            f"set tasks_per_node={gpus} (or gpus_per_node={tasks})"
        )
    if slurm and params.get("gpus_per_task"):
        # Slurm then shows each task its own GPU as cuda:0, but rank r takes cuda:LOCAL_RANK
        errors.append(
            f"{KEY}.gpus_per_task={params['gpus_per_task']}: each rank uses cuda:LOCAL_RANK "
            f"of all the node's GPUs; set {KEY}.gpus_per_task=null and "
            f"{KEY}.gpus_per_node and {KEY}.tasks_per_node to the GPUs per node"
        )
    nodes = params.get("nodes") or 1
    if not slurm and nodes != 1:
        errors.append(
            f"{KEY}.nodes={nodes}: the local launcher runs on this machine only; train "
            f"across nodes with a Slurm launcher: hydra/launcher=slurm_a100 {KEY}.nodes={nodes} "
            f"(on this machine: hydra/launcher=slurm_local after "
            f"`launch/local_slurm.sh up --nodes {nodes}`)"
        )
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


def first_job_values(config: DictConfig) -> DictConfig:
    """``config`` with each swept value (``trainer.lr=1e-4,1e-3``) set to its first: the
    sweep's own config leaves swept keys at their defaults, which may be a value the
    command line must set (``${dcvq.required:...}``). Swept groups (``quantizer=glob(*)``)
    stay: each job's composition checks them."""
    swept = [
        o
        for o in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
        if o.is_sweep_override() and "." in o.key_or_group and "/" not in o.key_or_group
    ]
    if not swept:
        return config
    config = copy.deepcopy(config)
    for override in swept:
        first = next(iter(override.sweep_iterator()))
        OmegaConf.update(config, override.key_or_group, first, force_add=True)
    return config


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
        if choices.get("hydra/launcher") == "slurm_local":
            if error := local_slurm_conf():
                errors.append(error)
            elif (have := local_slurm_nodes(os.environ["SLURM_CONF"])) is not None and (
                want := launcher.get("nodes") or 1
            ) > have:
                errors.append(
                    f"{KEY}.nodes={want}: the local cluster ({os.environ['SLURM_CONF']}) has "
                    f"{have} node(s); restart it with `launch/local_slurm.sh down && "
                    f"launch/local_slurm.sh up --nodes {want}` (as root)"
                )
        try:
            validate(first_job_values(config))  # what every job shares, checked once here
        except ConfigError as e:
            errors.append(str(e))
        if errors:
            log.error("sweep not submitted:\n  - %s", "\n  - ".join(errors))
            raise SystemExit(1)
