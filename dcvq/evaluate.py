"""Evaluate a checkpoint: ``python -m dcvq.evaluate checkpoint=PATH dataset=... [eval.*]``.

Writes ``eval.json`` (the same format as training's final evaluation), a comparison grid
and optionally the reconstructions into its Hydra run dir.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import save_image

from dcvq.build import build_dataset, build_eval_loader, model_from_checkpoint
from dcvq.config import CONF_DIR, register
from dcvq.config.diff import config_changes
from dcvq.config.validate import validate
from dcvq.data import dataset_info
from dcvq.evaluation import Evaluator
from dcvq.trainer.checkpoint import read_checkpoint
from dcvq.trainer.distributed import DistEnv, resolve_device

log = logging.getLogger(__name__)

# Data and protocol settings that change the numbers (the split and root may differ).
COMPARED_KEYS = tuple(
    f"dataset.{k}" for k in ("_target_", "resolution", "policy", "interpolation", "layout", "year")
) + ("eval.protocol",)


def evaluate_checkpoint(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    validate(cfg)
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device, DistEnv(), key="device")
    state = read_checkpoint(cfg.checkpoint)
    model = model_from_checkpoint(state).to(device).eval()
    # Scoring a checkpoint under other data settings than it was trained and evaluated
    # with is allowed (another split, another protocol), but must not pass unnoticed:
    # said before the evaluation, which can take long.
    changed = config_changes(state.get("config", ""), cfg, COMPARED_KEYS)
    if changed:
        log.warning("settings differ from the checkpoint's training run: %s", "; ".join(changed))
    dataset = build_dataset(cfg, cfg.dataset.split, training=False)
    loader = build_eval_loader(dataset, cfg.batch_size, cfg.num_workers, device)
    e = cfg.eval
    results = Evaluator.from_config(e, device)(
        model,
        loader,
        max_images=e.max_images,
        progress=cfg.progress,
        split=cfg.dataset.split,
        reconstructions_dir=run_dir / "reconstructions" if e.save_reconstructions else None,
    )
    results |= {
        "checkpoint": str(cfg.checkpoint),
        "step": int(state["step"]),
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "data": dataset_info(dataset),
        "differs_from_training": changed,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "eval.json").write_text(json.dumps(results, indent=1))
    batch = next(iter(loader)).images[: cfg.grid_images].to(device)
    with torch.no_grad():
        recon = model(batch)[0].clamp(-1, 1)
    save_image(
        torch.cat([batch, recon]).float().add(1).div(2),
        run_dir / "grid.png",
        nrow=len(batch),
        padding=2,
    )
    log.info(
        "%s: PSNR %.2f, FID %s, %d images -> %s",
        cfg.dataset.split,
        results["psnr"],
        results["fid"],
        results["n_images"],
        run_dir / "eval.json",
    )
    return results


register()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    evaluate_checkpoint(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
