"""`python -m dcvq.evaluate checkpoint=PATH` evaluates as the checkpoint was trained: data
and eval settings from its training run unless the command line sets them; metrics whose
weights are missing are skipped (null + reason) only where the run says
`eval.missing_weights=skip` (experiment=demo), the paper presets fail loudly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from dcvq.checkpoint import FORMAT
from dcvq.config import compose
from dcvq.evaluate import checkpoint_dataset_override, settings_from_training


def _evaluate_cfg(*overrides: str):
    overrides = ("checkpoint=x.pt", *overrides)
    return compose(list(overrides), config_name="evaluate"), list(overrides)


def test_unset_settings_come_from_the_training_run():
    saved = compose(["experiment=demo", "dataset.resolution=48", "eval.protocol=vqct",
                     "eval.max_images=5"])  # fmt: skip
    cfg, overrides = _evaluate_cfg()
    taken = settings_from_training(cfg, saved, overrides)
    assert cfg.dataset.resolution == 48 and cfg.eval.protocol == "vqct"
    assert cfg.eval.max_images is None and cfg.eval.missing_weights == "skip"  # whole split
    assert cfg.eval.fid and cfg.eval.lpips  # measured offline whatever training did
    assert "dataset.resolution=48" in taken and "eval.missing_weights=skip" in taken
    # what the command line sets wins
    cfg, overrides = _evaluate_cfg("dataset.split=train", "eval.protocol=clean",
                                   "dataset.resolution=64")  # fmt: skip
    settings_from_training(cfg, saved, overrides)
    assert (cfg.dataset.split, cfg.eval.protocol, cfg.dataset.resolution) == ("train", "clean", 64)


def test_another_dataset_keeps_only_the_training_preprocessing():
    saved = compose(["dataset=imagefolder", "dataset.root=/data/mine", "dataset.resolution=48",
                     "dataset.policy=squash", "dataset.split=test"])  # fmt: skip
    cfg, overrides = _evaluate_cfg("dataset=imagefolder", "dataset.root=/data/other")
    settings_from_training(cfg, saved, overrides)
    # same option: everything but what the command line sets
    assert cfg.dataset.root == "/data/other" and cfg.dataset.split == "test"
    assert cfg.dataset.policy == "squash" and cfg.dataset.resolution == 48
    cfg, overrides = _evaluate_cfg("dataset=coco", "dataset.root=/data/coco")
    settings_from_training(cfg, saved, overrides)
    assert cfg.dataset.resolution == 48 and cfg.dataset.policy == "squash"
    assert cfg.dataset.root == "/data/coco" and cfg.dataset.split == "val"


def test_the_dataset_option_comes_from_the_checkpoint(tmp_path):
    path = tmp_path / "ck.pt"
    config = OmegaConf.to_yaml(compose(["dataset=coco"]), resolve=False)
    torch.save({"format": FORMAT, "config": config}, path)
    assert checkpoint_dataset_override([f"checkpoint={path}", "eval.fid=false"]) == ["dataset=coco"]
    assert checkpoint_dataset_override([f"checkpoint={path}", "dataset=samples"]) == []
    missing = tmp_path / "none.pt"
    assert checkpoint_dataset_override([f"checkpoint={missing}"]) == []  # reported later


def test_presets_say_whether_missing_weights_are_skipped():
    assert compose(["experiment=demo"]).eval.missing_weights == "skip"
    for preset in ("table1_coco", "table1_ade20k", "table1_celebahq", "tableS1_cub"):
        assert compose([f"experiment={preset}"]).eval.missing_weights == "error", preset
    assert compose(config_name="evaluate").eval.missing_weights == "error"


def _evaluate(checkpoint, out, *extra):
    """The command line as the README gives it, on the CPU that trained the checkpoint
    (``device=auto``: no GPU visible), so that the numbers can be compared."""
    return subprocess.run(
        [sys.executable, "-m", "dcvq.evaluate", f"checkpoint={checkpoint}",
         f"hydra.run.dir={out}", *extra],
        capture_output=True, text=True, timeout=300,
        env=os.environ | {"CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip


@pytest.mark.slow
def test_readme_demo_line_on_a_demo_checkpoint_without_weights(tiny_cfg, tmp_path):
    from dcvq.trainer import train

    run = tmp_path / "run"
    train(tiny_cfg("experiment=demo", "trainer.max_steps=2", "eval.max_images=null"), run)
    trained = json.loads((run / "eval.json").read_text())
    # exactly the README's line (the torch hub cache of this test is empty)
    proc = _evaluate(run / "checkpoints/last.pt", tmp_path / "eval", "progress=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert results["fid"] is None and results["lpips"] is None
    assert set(results["not_measured"]) == {"fid", "lpips"}
    assert "no Inception weights at" in results["not_measured"]["fid"]
    assert "no VGG16 weights at" in results["not_measured"]["lpips"]
    # one line says it; the data is the training's (32 px crops here), so are the numbers
    assert proc.stdout.count("not measured (eval.missing_weights=skip") == 1, proc.stdout
    assert results["dataset"]["resolution"] == 32 and results["differs_from_training"] == []
    assert results["n_images"] == trained["n_images"]
    assert results["psnr"] == pytest.approx(trained["psnr"], rel=1e-6)


@pytest.mark.slow
def test_paper_checkpoint_without_weights_fails_loudly(tiny_cfg, tmp_path):
    from dcvq.trainer import train

    run = tmp_path / "run"
    train(tiny_cfg("trainer.max_steps=1"), run)
    proc = _evaluate(run / "checkpoints/last.pt", tmp_path / "eval")
    assert proc.returncode == 1
    assert "make weights" in proc.stderr and "eval.fid_weights" in proc.stderr
    assert not (tmp_path / "eval" / "eval.json").exists()


def test_skip_leaves_out_only_the_metrics_without_weights(lpips_weights, caplog):
    from dcvq.metrics.evaluator import Evaluator

    e = compose(["experiment=demo", "eval.fid=true", "eval.lpips=true"]).eval
    evaluator = Evaluator.from_config(e, "cpu")  # VGG16 present, Inception not
    assert evaluator.inception is None and evaluator.lpips is not None
    assert list(evaluator.not_measured) == ["fid"]
    assert [r.levelname for r in caplog.records if "not measured" in r.message] == ["WARNING"]
    with pytest.raises(FileNotFoundError, match="make weights"):
        Evaluator.from_config(compose(["eval.fid=true"]).eval, "cpu")  # error: the default
    # only absence is skipped: a file that is there but unreadable still fails
    lpips_weights.unlink()
    lpips_weights.write_bytes(b"not a state dict")
    with pytest.raises(RuntimeError, match="VGG16"):
        Evaluator.from_config(e, "cpu")
