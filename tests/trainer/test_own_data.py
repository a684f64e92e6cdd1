"""Training on a user's own folder of images, bad files included."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from dcvq.data import ImageBatch
from dcvq.trainer import Trainer, train


def test_imagefolder_training_skips_and_reports_bad_files(tiny_cfg, tmp_path, caplog):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 4)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 255, (40 + i, 48, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / split / f"img{i}.png")
    for split in ("train", "val"):
        (root / split / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(root / "val" / "gray.png")
    cfg = tiny_cfg(
        "dataset=imagefolder",
        f"dataset.root={root}",
        "dataset.resolution=32",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        "trainer.max_steps=2",
        "eval.max_images=null",
    )
    with caplog.at_level(logging.WARNING, logger="dcvq.trainer.loop"):
        results = train(cfg, tmp_path / "run")
    assert "unreadable training image(s) left out: train/broken.jpg" in caplog.text
    assert results["n_images"] == 5  # 4 photos + the grayscale one, converted
    assert results["skipped"] == ["val/broken.jpg"]
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["skipped"] == ["val/broken.jpg"]


def test_a_batch_of_only_unreadable_files_stops_with_their_names(tiny_cfg, tmp_path):
    trainer = Trainer(tiny_cfg(), tmp_path)
    batches = iter([ImageBatch(torch.empty(0, 3, 1, 1), [], ["a.jpg", "b.jpg"])])
    with pytest.raises(RuntimeError, match=r"no image of a training batch .*a.jpg, b.jpg"):
        trainer.next_images(batches)
