"""``python -m dcvq.prior checkpoint=PATH [prior=tiny|gpt_b] [dataset=...] [prior.*] [eval.*]``.

As ``python -m dcvq.evaluate``: the dataset option and its keys, ``eval.protocol`` and
``eval.missing_weights`` are the checkpoint's training run's unless the command line
sets them. Writes to ``outputs/prior/<date>/<time>/`` (``hydra.run.dir``); run it again
with the same ``hydra.run.dir`` to resume an interrupted prior. Under torchrun
(``WORLD_SIZE > 1``) it trains with DDP.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dcvq.checkpoint import read_checkpoint
from dcvq.config import CONF_DIR, register, validate
from dcvq.errors import reported
from dcvq.evaluate import checkpoint_dataset_override, settings_from_training
from dcvq.prior.config import check_prior_config
from dcvq.prior.stage import run_prior
from dcvq.runtime.cpus import configure_threads

log = logging.getLogger(__name__)


def prior_from_config(
    cfg: DictConfig, run_dir: str | Path, overrides: Sequence[str] | None = None
) -> dict[str, Any]:
    """Run the stage for a composed ``prior_train`` config. ``overrides``: the command
    line; given, the data and eval settings it leaves unset are the checkpoint's."""
    check_prior_config(cfg.prior)  # before reading a checkpoint that can be large
    state = read_checkpoint(cfg.checkpoint, mmap=True)  # names the path when it is bad
    saved = OmegaConf.create(state.get("config") or "{}")
    del state
    taken = settings_from_training(cfg, saved, overrides) if overrides is not None else []
    if taken:
        log.info("from the checkpoint's training run: %s", ", ".join(taken))
    validate(cfg)
    return run_prior(
        cfg.prior,
        cfg.checkpoint,
        run_dir,
        cfg.eval,
        cfg.device,
        dataset_cfg=cfg.dataset,
        num_workers=cfg.num_workers,
        progress=cfg.progress,
    )


register()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="prior_train")
def _run(cfg: DictConfig) -> None:
    configure_threads()
    hydra_cfg = HydraConfig.get()
    with reported(Path(hydra_cfg.runtime.output_dir), f"{hydra_cfg.job.name}.log"):
        prior_from_config(cfg, hydra_cfg.runtime.output_dir, hydra_cfg.overrides.task)


def main() -> None:
    # Hydra composes the dataset option before the checkpoint is read: name the
    # checkpoint's option unless the command line chose one.
    sys.argv[1:] = [*checkpoint_dataset_override(sys.argv[1:]), *sys.argv[1:]]
    _run()


if __name__ == "__main__":
    main()
