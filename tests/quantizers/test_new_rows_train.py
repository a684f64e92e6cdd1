"""The rows of today's quantizers (+baseline=fsq|lfq|simvq, quantizer.rotation_trick=true)
train end to end in the pipeline, their evaluation measures them and the checkpoint
decodes its own indices."""

from __future__ import annotations

import pytest
import torch

from dcvq import load_model
from dcvq.trainer import Trainer

ROWS = {
    # (overrides, quantizer=..., class, implied size at codebook.size=128)
    "fsq": (["+baseline=fsq", "codebook.size=128"], None, "FSQQuantizer", 125),
    "lfq": (["+baseline=lfq", "codebook.size=128"], None, "LFQQuantizer", 128),
    "simvq": (["+baseline=simvq", "codebook.size=32"], None, "SimVQQuantizer", 32),
    "vq_rotation": (["quantizer.rotation_trick=true"], "vq", "VectorQuantizer", 32),
}
GEOMETRY = {"effective_rank", "min_distance", "nn_distance_p5", "quantization_error",
            "distinct_at_quantization"}  # fmt: skip


@pytest.mark.parametrize("row", ROWS)
def test_row_trains_evaluates_and_round_trips(tiny_cfg, tmp_path, row):
    overrides, option, target, size = ROWS[row]
    cfg = tiny_cfg(*overrides, "trainer.max_steps=2", quantizer=option)
    assert cfg.quantizer._target_.endswith(target)
    results = Trainer(cfg, tmp_path).fit()
    cb = results["codebooks"]["codebook"]
    assert cb["size"] == size and len(cb["counts"]) == size
    assert sum(cb["counts"]) == results["n_images"] * 8 * 8
    assert set(cb) >= GEOMETRY and 1 <= cb["distinct_at_quantization"] <= cb["distinct"]
    assert 0 < cb["distinct"] <= cb["used"] and cb["effective_rank"] >= 1
    model = load_model(tmp_path / "checkpoints" / "last.pt")
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z_q, indices = model.encode(x)
        assert indices.shape == (3, 1, 8, 8) and int(indices.max()) < size
        assert torch.equal(model.quantizer.decode_indices(indices), z_q)
        assert torch.equal(model.decode_indices(indices), model.decode(z_q))
