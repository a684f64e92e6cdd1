"""The evaluation CLI on a checkpoint from a tiny training run, end to end."""

import json
import subprocess
import sys

import pytest

from dcvq.config import compose
from dcvq.evaluate import evaluate_checkpoint
from dcvq.trainer import train


@pytest.fixture
def trained(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    train(tiny_cfg("trainer.max_steps=2", "eval.max_images=null"), run)
    return run


def test_offline_numbers_equal_training_numbers(trained, tmp_path):
    cfg = compose(
        [
            f"checkpoint={trained / 'checkpoints/last.pt'}",
            "dataset.resolution=32",
            "eval.fid=false",
            "eval.lpips=false",
            "device=cpu",  # the training's (experiment=tiny): the numbers are compared
            "num_workers=0",
            "progress=false",
        ],
        config_name="evaluate",
    )
    results = evaluate_checkpoint(cfg, tmp_path / "eval")
    during_training = json.loads((trained / "eval.json").read_text())
    for key in ("psnr", "l1", "l2", "ssim", "n_images"):
        assert results[key] == pytest.approx(during_training[key], rel=1e-6), key
    for name, cb in during_training["codebooks"].items():
        assert results["codebooks"][name]["counts"] == cb["counts"]
    assert (tmp_path / "eval" / "grid.png").stat().st_size > 0
    # both record the data read; same settings as in training: nothing flagged
    assert results["data"] == during_training["data"]
    assert results["data"]["dataset"] == "SampleImages" and results["data"]["split"] == "val"
    assert results["differs_from_training"] == []
    # image by image too (the report's paired comparisons pair these files)
    assert (tmp_path / "eval" / "per_image.csv").read_text() == (
        trained / "per_image.csv"
    ).read_text()


def test_cli_with_fid_lpips_and_vqct(trained, tmp_path, inception_weights, lpips_weights):
    out = tmp_path / "eval"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dcvq.evaluate",
            f"checkpoint={trained / 'checkpoints/last.pt'}",
            "dataset.resolution=32",
            "eval.protocol=vqct",
            "eval.max_images=12",
            "eval.save_reconstructions=true",
            "num_workers=0",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "eval.json").read_text())
    for key in ("fid", "psnr", "l1", "l2", "ssim", "lpips"):
        assert isinstance(results[key], float), key
    assert results["fid"] > 0 and results["protocol"] == "vqct" and results["n_images"] == 12
    assert results["split"] == "val" and results["skipped"] == []
    assert results["differs_from_training"] == ["eval.protocol: clean -> vqct"]
    assert "settings differ from the checkpoint's training run: eval.protocol" in proc.stdout
    assert set(results["codebooks"]) == {"global", "local"}
    assert len(list((out / "reconstructions").glob("*.png"))) == 12
    rows = (out / "per_image.csv").read_text().splitlines()
    assert rows[0] == "split,name,psnr,l1,l2,ssim,lpips" and len(rows) == 13
    assert all(r.startswith("val,") for r in rows[1:])
    lpips = [float(r.split(",")[-1]) for r in rows[1:]]
    assert sum(lpips) / 12 == pytest.approx(results["lpips"], rel=1e-9)
    assert "img/s" in proc.stderr  # the progress bar


def test_cli_missing_weights_fail_with_instructions(trained, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dcvq.evaluate",
            f"checkpoint={trained / 'checkpoints/last.pt'}",
            "dataset.resolution=32",
            "eval.lpips=false",
            "num_workers=0",
            f"hydra.run.dir={tmp_path / 'e'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "make weights" in proc.stderr and "eval.fid_weights" in proc.stderr
