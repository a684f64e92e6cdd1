"""Builders of fake finished runs for the report's seed, paired and verdict tests: a Hydra
job dir with .hydra/{config,hydra}.yaml, eval.json (its means taken from the per-image
values; a test section where the run has a test split), per_image.csv (with its split
column), metrics.jsonl and a sample grid. Nothing is trained."""

from __future__ import annotations

import csv
import json
import os
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
#: the test split's images: 10 photos of 4 tiles each
TEST_NAMES = [f"photo{i // 4}@{i % 4},0" for i in range(N_IMAGES)]
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
    n = len(values["psnr"])
    psnr = values["psnr"] + db + rng.normal(0, noise, n) if noise else values["psnr"] + db
    return {
        "psnr": psnr,
        "l1": 0.1 * np.exp(-(psnr - 20) / 10),
        "l2": 0.04 * 10 ** (-(psnr - 20) / 10),
        "ssim": np.clip(0.6 + (psnr - 20) / 30, 0, 1),
    }


def write_per_image(
    path: Path, splits: list[tuple[str, list[str], dict[str, np.ndarray]]], legacy: bool = False
) -> None:
    """per_image.csv as dcvq.evaluation writes it (``split,name,<metric>,...``), or as runs
    from before the split column did (``legacy``: one split, ``name,<metric>,...``)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        metrics = list(splits[0][2])
        w.writerow(([] if legacy else ["split"]) + ["name", *metrics])
        for split, names, values in splits:
            lead = [] if legacy else [split]
            w.writerows(
                [*lead, n, *(repr(float(values[m][i])) for m in metrics)]
                for i, n in enumerate(names)
            )


def usage_books(
    option: str, size: int, usage: tuple[float, float] | float, distinct: int | None = None
) -> dict:
    """eval.json's codebooks; ``distinct``: distinct vectors among the used codes of each
    (a collapse when below half of them)."""
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
        if distinct is not None:
            books[name] |= {"distinct": distinct, "distinct_usage": 100 * distinct / size}
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
    extra={dotted key: value}, colour=(r, g, b), test=None, test_names=None, device=None,
    torch="2.5.0", distinct=None, legacy_csv=False, mtime=None)`` -> the job dir.

    ``test``: the test split's per-image values (eval.json's ``test`` section, rows of
    per_image.csv); ``device``: ``trainer.device``; ``mtime``: eval.json's mtime."""

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
        test: dict[str, np.ndarray] | None = None,
        test_names: list[str] | None = None,
        device: str | None = None,
        torch: str = "2.5.0",
        distinct: int | None = None,
        legacy_csv: bool = False,
        mtime: float | None = None,
    ) -> Path:
        d = root / name
        (d / ".hydra").mkdir(parents=True)
        dataset = {"_target_": "dcvq.data.SampleImages", "split": "val", "resolution": 32}
        cfg = OmegaConf.create(
            {
                "quantizer": quantizer_config(option),
                "codebook": {"size": size},
                "model": {"ch_mult": [1, 2, 2]},  # f4: 8x8 tokens at 32x32
                "loss": {"perceptual_weight": 1.25, "disc_factor": 1.0, "disc_weight": 0.8},
                "dataset": dataset | ({"test_split": "test"} if test is not None else {}),
                "trainer": {"max_steps": max_steps, "lr": 1e-4, "num_workers": 2},
                "logger": {"name": "${hydra:runtime.choices.quantizer}"},
                "seed": seed,
            }
        )
        if device is not None:
            OmegaConf.update(cfg, "trainer.device", device)
        for key, value in (extra or {}).items():
            OmegaConf.update(cfg, key, value)
        OmegaConf.save(cfg, d / ".hydra" / "config.yaml")
        choices = {"dataset": "samples", "quantizer": option, "experiment": experiment}
        hydra = OmegaConf.create({"hydra": {"runtime": {"choices": choices}}})
        OmegaConf.save(hydra, d / ".hydra" / "hydra.yaml")
        values = values if values is not None else base_values()
        names = names if names is not None else NAMES
        splits = [("val", names, values)]
        if test is not None:
            splits.append(("test", test_names or names, test))
        write_per_image(d / "per_image.csv", splits, legacy=legacy_csv)
        means = {m: float(np.mean(v)) for m, v in values.items()}
        history = history if history is not None else [(max_steps // 2, means["psnr"] - 1)]
        with open(d / "metrics.jsonl", "w") as f:
            for step, psnr in history:
                f.write(json.dumps({"step": step, "psnr": psnr}) + "\n")

        def section(split: str, vals: dict[str, np.ndarray], n: int) -> dict:
            return {m: float(np.mean(v)) for m, v in vals.items()} | {
                "fid": None,
                "lpips": None,
                "codebooks": usage_books(option, size, usage, distinct),
                "protocol": "clean",
                "split": split,
                "n_images": n,
                "versions": {"torch": torch},
            }

        result = section("val", values, len(names)) | {
            "step": max_steps,
            "config": OmegaConf.to_container(cfg, resolve=False),
        }
        if test is not None:
            result["test"] = section("test", test, len(test_names or names))
        (d / "eval.json").write_text(json.dumps(result))
        if mtime is not None:
            os.utime(d / "eval.json", (mtime, mtime))
        grid(d / "samples" / f"step_{max_steps:07d}.png", colour)
        return d

    return make


@pytest.fixture(scope="session")
def make_row(make_run) -> Callable[..., list[Path]]:
    """``make_row(root, name, option, db, seeds=(0, 1, 2), noise=0.05, test=True,
    budget_db=None, **make_run's keywords)`` -> the job dirs: one run per seed,
    ``db`` more PSNR than :func:`base_values` on val (and on the test split's own
    images, :data:`TEST_NAMES`, when ``test``), each seed with its own noise; with
    ``budget_db``, also a run at twice ``max_steps`` (``<name>_2x``, seed 0), ``budget_db``
    above the base: the budget check."""

    def make(
        root: Path,
        name: str,
        option: str,
        db: float,
        seeds: tuple[int, ...] = (0, 1, 2),
        noise: float = 0.05,
        test: bool = True,
        budget_db: float | None = None,
        max_steps: int = 100,
        **kw,
    ) -> list[Path]:
        base, base_test = base_values(), base_values(4321)
        tag = sum(map(ord, name))  # each row its own noise, the same in every test

        def one(job: str, seed: int, shift: float, steps: int) -> Path:
            values = shifted(base, shift, noise, seed=tag + 10 * seed)
            extra = {"test": shifted(base_test, shift, noise, seed=tag + 10 * seed + 5)}
            extra |= {"test_names": TEST_NAMES}
            return make_run(
                root, job, option, seed=seed, values=values, max_steps=steps,
                **(extra if test else {}), **kw,
            )  # fmt: skip

        jobs = [one(f"{name}_s{seed}", seed, db, max_steps) for seed in seeds]
        if budget_db is not None:
            jobs.append(one(f"{name}_2x", 0, budget_db, 2 * max_steps))
        return jobs

    return make


@pytest.fixture(scope="session")
def fakes() -> SimpleNamespace:
    """This module's value builders (tests/ is not a package: nothing to import them from)."""
    return SimpleNamespace(
        NAMES=NAMES,
        TEST_NAMES=TEST_NAMES,
        N_IMAGES=N_IMAGES,
        base_values=base_values,
        shifted=shifted,
        write_per_image=write_per_image,
    )
