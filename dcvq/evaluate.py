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
from torch.utils.data import DataLoader
from torchvision.utils import save_image

from dcvq.build import build_dataset, build_model
from dcvq.config import CONF_DIR, register
from dcvq.config.validate import validate
from dcvq.data import collate
from dcvq.evaluation import evaluate
from dcvq.trainer.checkpoint import read_checkpoint
from dcvq.trainer.distributed import DistEnv, resolve_device

log = logging.getLogger(__name__)


def evaluate_checkpoint(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    validate(cfg)
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device, DistEnv())
    state = read_checkpoint(cfg.checkpoint)
    model = build_model(OmegaConf.create(state["config"]))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    dataset = build_dataset(cfg, cfg.dataset.split, training=False)
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.num_workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
    e = cfg.eval
    results = evaluate(
        model,
        loader,
        device=device,
        protocol=e.protocol,
        fid=e.fid,
        fid_weights=e.fid_weights,
        lpips=e.lpips,
        lpips_weights=e.lpips_weights,
        max_images=e.max_images,
        progress=cfg.progress,
        split=cfg.dataset.split,
        reconstructions_dir=run_dir / "reconstructions" if e.save_reconstructions else None,
    )
    results |= {
        "checkpoint": str(cfg.checkpoint),
        "step": int(state["step"]),
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
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
