"""benchmarks/prior.py at a tiny size: both rows measured, the GPU rows marked."""

from __future__ import annotations

import torch

from benchmarks import harness, prior


def test_prior_benchmark(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ctx = harness.Context(torch.device("cpu"), "tiny", tmp_path, log=lambda msg: None)
        out = prior.run(ctx)
    finally:
        torch.set_num_threads(threads)
    measured = {r["case"]: r for r in out["rows"] if r["median_ms"] is not None}
    assert set(measured) == {"train_step", "sample"}
    assert measured["train_step"]["unit"] == "tokens" and measured["train_step"]["throughput"] > 0
    assert measured["train_step"]["gflop_per_step"] > 0
    gpu = [r for r in out["rows"] if r["median_ms"] is None]
    assert [r["case"] for r in gpu] == ["train_step", "sample"]
    assert all("prior=gpt_b" in r["config"] and r["note"].startswith("not measured") for r in gpu)
