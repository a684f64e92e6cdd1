"""dcvq.report.collect: runs that differ only in their seed are one configuration; any
other difference (but for keys that cannot change results) makes another."""

from __future__ import annotations

import numpy as np
import pytest

from dcvq.report import collect, group_runs, read_per_image


def test_seeds_are_grouped_and_other_differences_are_not(tmp_path, make_run):
    sweep = tmp_path / "sweep"
    for seed in (2, 0, 1):
        # keys that cannot change results differ too: still seeds of one row
        extra = {"trainer.num_workers": seed, "logger.project": f"p{seed}"}
        make_run(sweep, f"t128_s{seed}", "t128_s128", seed=seed, extra=extra)
    make_run(sweep, "t128_lr", "t128_s128", seed=0, extra={"trainer.lr": 3e-4})
    make_run(sweep, "t128_1024", "t128_s128", size=1024, seed=0)
    make_run(sweep, "vq_s0", "vq", seed=0)
    make_run(sweep, "t128_table3", "t128_s128", seed=3, experiment="table3")
    configs = group_runs(collect(sweep))
    by_runs = {tuple(r.rel for r in c.runs): c for c in configs}
    assert set(by_runs) == {
        ("t128_s0", "t128_s1", "t128_s2"),  # ordered by seed
        ("t128_lr",),
        ("t128_1024",),
        ("vq_s0",),
        ("t128_table3",),  # another table: its own section
    }
    seeds = by_runs[("t128_s0", "t128_s1", "t128_s2")]
    assert seeds.seeds == [0, 1, 2] and seeds.representative.rel == "t128_s0"
    # labels tell rows of a section apart: the size when there are several, then the key
    assert seeds.label == "Dual Codebook T-128/S-128, 512 codes [trainer.lr=0.0001]"
    assert by_runs[("t128_lr",)].label.endswith("512 codes [trainer.lr=0.0003]")
    assert by_runs[("t128_1024",)].label == "Dual Codebook T-128/S-128, 1024 codes"
    assert by_runs[("vq_s0",)].label == "VQ-GAN, 512 codes"
    assert by_runs[("t128_table3",)].label == "Dual Codebook T-128/S-128"
    assert {"t128_s128", "dual codebook t-128/s-128", "t-128/s-128"} <= seeds.names()


def test_seeds_are_grouped_by_the_precision_that_ran(tmp_path, make_run):
    """precision=auto is fp32 on the CPU and bf16 on CUDA: the device is neutral, the
    arithmetic it implies is not."""
    runs = {
        "cpu_auto": ("cpu", "auto"),
        "cpu_fp32": ("cpu", "fp32"),
        "gpu_fp32": ("cuda", "fp32"),
        "gpu_auto": ("cuda", "auto"),
        "gpu_bf16": ("cuda:1", "bf16"),
        "any_auto": ("auto", "auto"),  # unknown device: auto stays what it says
    }
    for seed, (name, (device, precision)) in enumerate(runs.items()):
        extra = {"trainer.device": device, "trainer.precision": precision}
        make_run(tmp_path, name, "vq", seed=seed, extra=extra)
    groups = {tuple(r.rel for r in c.runs) for c in group_runs(collect(tmp_path))}
    assert groups == {
        ("cpu_auto", "cpu_fp32", "gpu_fp32"),
        ("gpu_auto", "gpu_bf16"),
        ("any_auto",),
    }


def test_an_unfinished_seed_is_listed_but_not_counted(tmp_path, make_run):
    make_run(tmp_path, "s0", "vq", seed=0)
    (make_run(tmp_path, "s1", "vq", seed=1) / "eval.json").unlink()
    (config,) = group_runs(collect(tmp_path))
    assert len(config.runs) == 2 and config.seeds == [0]


def test_per_image_and_history_are_read(tmp_path, make_run):
    values = {"psnr": np.arange(40.0), "l1": np.ones(40), "l2": np.ones(40), "ssim": np.ones(40)}
    job = make_run(tmp_path, "a", "vq", values=values, history=[(50, 1.0), (20, 0.5)])
    with open(job / "metrics.jsonl", "a") as f:
        f.write('{"step": 50, "psnr": 2.0}\n{"step": 7')  # a re-run step, a cut line
    (run,) = collect(tmp_path)
    assert run.per_image.names[1] == "img01@0,32" and run.per_image.values["psnr"][39] == 39
    assert [(h["step"], h["psnr"]) for h in run.history] == [(20, 0.5), (50, 2.0), (100, 19.5)]
    (job / "per_image.csv").write_text("name,psnr\nx,1\nx,2\n")
    (run,) = collect(tmp_path)
    assert run.per_image is None and "occurs twice" in run.per_image_problem
    (job / "per_image.csv").unlink()
    (run,) = collect(tmp_path)
    assert run.ok and "per_image.csv: missing" in run.per_image_problem


@pytest.mark.parametrize("bad", ["psnr,name\n1,x\n", "name,psnr\nx\n"])
def test_a_damaged_per_image_file_is_named(tmp_path, bad):
    path = tmp_path / "per_image.csv"
    path.write_text(bad)
    with pytest.raises(ValueError, match="per_image.csv"):
        read_per_image(path)
