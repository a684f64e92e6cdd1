"""Config -> objects. The only place that turns a composed config into modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from dcvq.checkpoint import read_checkpoint
from dcvq.errors import ConfigError
from dcvq.losses import VQGANLoss
from dcvq.model import VQModel
from dcvq.runtime.cpus import auto_workers, process_cpus

# Keys of a dataset option that choose splits rather than build the dataset.
_SPLIT_KEYS = ("train_split", "test_split")


def build_model(cfg: DictConfig) -> VQModel:
    """The VQ model of a composed train config (``cfg.model`` around ``cfg.quantizer``)."""
    quantizer = instantiate(cfg.quantizer, _convert_="all")
    return instantiate(cfg.model, quantizer=quantizer, _convert_="all")


def build_loss(cfg: DictConfig) -> VQGANLoss:
    return instantiate(cfg.loss, _convert_="all")


def build_dataset(cfg: DictConfig, split: str, training: bool) -> Dataset:
    """``cfg.dataset`` for one split (``train_split`` for training, ``split`` to evaluate).

    Each has its own crop policy: training ``train_policy`` (default ``random_crop``, as
    taming), evaluation ``policy`` (default ``center_crop``), so that a fixed crop in
    training is a choice of its own, not a side effect of the evaluation protocol.
    Evaluation never uses random crops or flips, whichever split it reads (VQCT's CUB
    numbers are on the training images): ``squash`` stays, anything else becomes
    ``center_crop``.
    """
    node = OmegaConf.to_container(cfg.dataset, resolve=True)
    for key in _SPLIT_KEYS:
        node.pop(key, None)
    node["split"] = split
    train_policy = node.pop("train_policy", None)
    if "policy" in node:
        if training:
            node["policy"] = train_policy or "random_crop"
        else:
            node["policy"] = "squash" if node["policy"] == "squash" else "center_crop"
    if not training and "flip" in node:
        node["flip"] = False
    try:
        return instantiate(node)
    except Exception as e:
        # A dataset knows its split and crop only as ``split`` and ``policy``; for
        # training they came from ``dataset.train_split`` and ``dataset.train_policy``.
        message = str(e)
        if training and ("dataset.split=" in message or "dataset.policy=" in message):
            message = message.replace("dataset.split=", "dataset.train_split=")
            raise ConfigError(message.replace("dataset.policy=", "dataset.train_policy=")) from e
        raise


def resolve_num_workers(value: int | str) -> int:
    """Loader workers for ``trainer.num_workers`` / ``num_workers``: an int as given, or
    ``auto``: of the CPUs this process may use, one for the main process and the rest, at
    most 8, for workers (``dcvq.runtime.cpus``). PyTorch warns when a loader has more
    workers than CPUs."""
    if value != "auto":
        return int(value)
    return auto_workers(process_cpus())


def build_eval_loader(
    dataset: Dataset, batch_size: int, num_workers: int | str, device: torch.device
) -> DataLoader:
    """Evaluation order, no shuffling. The explicit generator keeps creating an iterator
    from drawing on the global RNG (a resumed run would shift its dropout masks)."""
    from dcvq.data import collate
    from dcvq.data.workers import SignalSafeLoader

    # Its workers leave Slurm's preemption signals to the main process.
    return SignalSafeLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=resolve_num_workers(num_workers),
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )


def model_from_checkpoint(state: dict[str, Any]) -> VQModel:
    """The model a checkpoint (as read by ``read_checkpoint``) describes, weights loaded."""
    model = build_model(OmegaConf.create(state["config"]))
    model.load_state_dict(state["model"])
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> VQModel:
    """A model from a dcvq checkpoint, in eval mode. Loads with ``weights_only=True``."""
    return model_from_checkpoint(read_checkpoint(path)).to(device).eval()
