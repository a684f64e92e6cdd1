"""Train a tokenizer: ``python train.py [overrides]`` (Hydra; ``-m`` for sweeps)."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from dcvq.config import register
from dcvq.trainer import train

register()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    results = train(cfg, HydraConfig.get().runtime.output_dir, logger=instantiate(cfg.logger))
    # the job's return value (the sweep's objective); only rank 0 has results
    return float(results.get("psnr", float("nan")))


if __name__ == "__main__":
    main()
