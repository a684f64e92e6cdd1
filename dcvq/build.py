"""Config -> objects. The only place that turns a composed config into modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from dcvq.losses import VQGANLoss
from dcvq.model import VQModel

# Keys of a dataset option that choose splits rather than build the dataset.
_SPLIT_KEYS = ("train_split",)


def build_model(cfg: DictConfig) -> VQModel:
    """The VQ model of a composed train config (``cfg.model`` around ``cfg.quantizer``)."""
    quantizer = instantiate(cfg.quantizer, _convert_="all")
    return instantiate(cfg.model, quantizer=quantizer, _convert_="all")


def build_loss(cfg: DictConfig) -> VQGANLoss:
    return instantiate(cfg.loss, _convert_="all")


def build_dataset(cfg: DictConfig, split: str, training: bool) -> Dataset:
    """``cfg.dataset`` for one split (``train_split`` for training, ``split`` to evaluate).

    Evaluation never uses random crops or flips, whichever split it reads (VQCT's CUB
    numbers are on the training images): ``squash`` stays, anything else becomes
    ``center_crop``.
    """
    node = OmegaConf.to_container(cfg.dataset, resolve=True)
    for key in _SPLIT_KEYS:
        node.pop(key, None)
    node["split"] = split
    if not training:
        if "policy" in node:
            node["policy"] = "squash" if node["policy"] == "squash" else "center_crop"
        if "flip" in node:
            node["flip"] = False
    return instantiate(node)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> VQModel:
    """A model from a dcvq checkpoint, in eval mode. Loads with ``weights_only=True``."""
    from dcvq.trainer.checkpoint import read_checkpoint

    state: dict[str, Any] = read_checkpoint(path)
    cfg = OmegaConf.create(state["config"])
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    return model.to(device).eval()
