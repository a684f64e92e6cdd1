"""Builders of fake finished runs for the report's seed, paired and verdict tests: a Hydra
job dir with .hydra/{config,hydra}.yaml, eval.json (its means taken from the per-image
values), per_image.csv, metrics.jsonl and a sample grid. Nothing is trained."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

#: image names as the samples dataset gives them (with a comma: per_image.csv quotes it)
N_IMAGES = 40
NAMES = [f"img{i:02d}@0,32" for i in range(N_IMAGES)]
HALVES = {
    "vq": None,
    "s128_s128": (128, 128, False),
    "t128_s128": (128, 128, True),
    "t192_s64": (192, 64, True),
    "t64_s192": (64, 192, True),
}
GRID_ROW = 16  # height of each row of a fake sample grid


def quantizer_config(option: str) -> dict:
    halves = HALVES[option]
    if halves is None:
        return {
            "_target_": "dcvq.quantizers.VectorQuantizer",
            "codebook_size": "${codebook.size}",
            "dim": "${model.embed_dim}",
        }
    g, loc, transformer = halves
    return {
        "_target_": "dcvq.quantizers.DualCodebookQuantizer",
        "codebook_size": "${codebook.size}",
        "global_dim": g,
        "local_dim": loc,
        "global_transformer": transformer,
    }


def base_values(seed: int = 1234) -> dict[str, np.ndarray]:
    """Per-image metrics of a reference reconstruction: images differ a lot, so only a
    paired comparison sees small shifts."""
    rng = np.random.default_rng(seed)
    psnr = rng.normal(20.0, 3.0, N_IMAGES)
    return {
        "psnr": psnr,
        "l1": 0.1 * np.exp(-(psnr - 20) / 10),
        "l2": 0.04 * 10 ** (-(psnr - 20) / 10),
        "ssim": np.clip(0.6 + (psnr - 20) / 30, 0, 1),
    }


def shifted(values: dict[str, np.ndarray], db: float, noise: float, seed: int) -> dict:
    """``values`` with ``db`` more PSNR (and the L1/L2/SSIM that go with it) plus noise."""
    rng = np.random.default_rng(seed)
    psnr = values["psnr"] + db + rng.normal(0, noise, N_IMAGES) if noise else values["psnr"] + db
    return {
        "psnr": psnr,
        "l1": 0.1 * np.exp(-(psnr - 20) / 10),
        "l2": 0.04 * 10 ** (-(psnr - 20) / 10),
        "ssim": np.clip(0.6 + (psnr - 20) / 30, 0, 1),
    }


def write_per_image(path: Path, names: list[str], values: dict[str, np.ndarray]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["name", *values])
        w.writerows([n, *(repr(float(values[m][i])) for m in values)] for i, n in enumerate(names))


def usage_books(option: str, size: int, usage: tuple[float, float] | float) -> dict:
    names = ["codebook"] if HALVES[option] is None else ["global", "local"]
    usages = usage if isinstance(usage, tuple) else (usage,) * len(names)
    books = {}
    for name, u in zip(names, usages, strict=False):
        used = round(size * u / 100)
        books[name] = {
            "size": size,
            "used": used,
            "usage": 100 * used / size,
            "dead": size - used,
            "perplexity": float(used),
            "counts": [1] * used + [0] * (size - used),
        }
    return books


def grid(path: Path, colour: tuple[int, int, int]) -> None:
    img = Image.new("RGB", (4 * GRID_ROW, 2 * GRID_ROW), (90, 90, 90))
    img.paste(Image.new("RGB", (4 * GRID_ROW, GRID_ROW), colour), (0, GRID_ROW))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


@pytest.fixture(scope="session")
def make_run() -> Callable[..., Path]:
    """``make_run(root, name, option, size=512, seed=0, values=..., names=NAMES,
    history=[(step, psnr), ...], usage=99.0, experiment="table2", max_steps=100,
    extra={dotted key: value}, colour=(r, g, b))`` -> the job dir."""

    def make(
        root: Path,
        name: str,
        option: str,
        size: int = 512,
        seed: int = 0,
        values: dict[str, np.ndarray] | None = None,
        names: list[str] | None = None,
        history: list[tuple[int, float]] | None = None,
        usage: tuple[float, float] | float = 99.0,
        experiment: str = "table2",
        max_steps: int = 100,
        extra: dict | None = None,
        colour: tuple[int, int, int] = (255, 0, 0),
    ) -> Path:
        d = root / name
        (d / ".hydra").mkdir(parents=True)
        cfg = OmegaConf.create(
            {
                "quantizer": quantizer_config(option),
                "codebook": {"size": size},
                "loss": {"perceptual_weight": 1.25, "disc_factor": 1.0, "disc_weight": 0.8},
                "dataset": {"_target_": "dcvq.data.SampleImages", "split": "val"},
                "trainer": {"max_steps": max_steps, "lr": 1e-4, "num_workers": 2},
                "logger": {"name": "${hydra:runtime.choices.quantizer}"},
                "seed": seed,
            }
        )
        for key, value in (extra or {}).items():
            OmegaConf.update(cfg, key, value)
        OmegaConf.save(cfg, d / ".hydra" / "config.yaml")
        choices = {"dataset": "samples", "quantizer": option, "experiment": experiment}
        hydra = OmegaConf.create({"hydra": {"runtime": {"choices": choices}}})
        OmegaConf.save(hydra, d / ".hydra" / "hydra.yaml")
        values = values if values is not None else base_values()
        names = names if names is not None else NAMES
        write_per_image(d / "per_image.csv", names, values)
        means = {m: float(np.mean(v)) for m, v in values.items()}
        history = history if history is not None else [(max_steps // 2, means["psnr"] - 1)]
        with open(d / "metrics.jsonl", "w") as f:
            for step, psnr in history:
                f.write(json.dumps({"step": step, "psnr": psnr}) + "\n")
        result = means | {
            "fid": None,
            "lpips": None,
            "codebooks": usage_books(option, size, usage),
            "protocol": "clean",
            "split": "val",
            "n_images": len(names),
            "step": max_steps,
            "config": OmegaConf.to_container(cfg, resolve=False),
        }
        (d / "eval.json").write_text(json.dumps(result))
        grid(d / "samples" / f"step_{max_steps:07d}.png", colour)
        return d

    return make


@pytest.fixture(scope="session")
def fakes() -> SimpleNamespace:
    """This module's value builders (tests/ is not a package: nothing to import them from)."""
    return SimpleNamespace(NAMES=NAMES, N_IMAGES=N_IMAGES, base_values=base_values, shifted=shifted)
