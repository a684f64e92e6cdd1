"""Compose a config from ``conf/`` in Python (notebooks, tests), as ``train.py`` would."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from dcvq.config.store import register

#: the repository's config directory (dcvq is installed editable from the repo)
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose(
    overrides: Sequence[str] = (), config_name: str = "train", config_dir: Path | None = None
) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    config_dir = Path(config_dir or CONF_DIR)
    if not (config_dir / f"{config_name}.yaml").is_file():
        raise FileNotFoundError(
            f"no {config_name}.yaml in {config_dir}: pass config_dir= the repository's conf/"
        )
    register()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))
