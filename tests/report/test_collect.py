"""dcvq.report.collect: runs that differ only in their seed are one configuration; any
other difference (but for keys that cannot change results) makes another."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from dcvq.report import (
    collect,
    collect_sweeps,
    group_runs,
    main_budget,
    read_per_image,
    report,
    source_of,
)


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
    """precision=auto is fp32 on the CPU and bf16 on CUDA: pooled over devices
    (--pool-devices), the device is neutral, the arithmetic it implies is not; not pooled,
    each device type is a row of its own."""
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
    runs = collect(tmp_path)
    groups = {tuple(r.rel for r in c.runs) for c in group_runs(runs, pool_devices=True)}
    assert groups == {
        ("cpu_auto", "cpu_fp32", "gpu_fp32"),
        ("gpu_auto", "gpu_bf16"),
        ("any_auto",),
    }
    groups = {tuple(r.rel for r in c.runs) for c in group_runs(runs)}
    assert groups == {
        ("cpu_auto", "cpu_fp32"),
        ("gpu_fp32",),
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
    val = run.per_image["val"]
    assert val.names[1] == "img01@0,32" and val.values["psnr"][39] == 39
    assert run.per_image_on("val") is val and run.per_image_on("test") is None
    assert [(h["step"], h["psnr"]) for h in run.history] == [(20, 0.5), (50, 2.0), (100, 19.5)]
    (job / "per_image.csv").write_text("name,psnr\nx,1\nx,2\n")
    (run,) = collect(tmp_path)
    assert run.per_image == {} and "occurs twice" in run.per_image_problem
    (job / "per_image.csv").unlink()
    (run,) = collect(tmp_path)
    assert run.ok and "per_image.csv: missing" in run.per_image_problem


def test_per_image_with_and_without_its_split_column(tmp_path, make_run, fakes):
    """per_image.csv's split column (val rows, then test rows); records from before it
    (experiments/study_cpu/runs_5000) hold eval.json's split alone."""
    test = fakes.shifted(fakes.base_values(), 1.0, 0.0, seed=0)
    names = [f"t{i}" for i in range(fakes.N_IMAGES)]
    make_run(tmp_path, "new", "vq", test=test, test_names=names)
    make_run(tmp_path, "old", "vq", seed=1, legacy_csv=True)
    new, old = collect(tmp_path)
    assert new.per_image_on("test").names == names
    assert new.per_image_on("test").values["psnr"] == pytest.approx(test["psnr"])
    assert new.results_on("test")["psnr"] == pytest.approx(test["psnr"].mean())
    assert list(old.per_image) == ["val"] and old.results_on("test") is None
    assert old.per_image_on("val").names == fakes.NAMES
    # tiles name their source photo before "@"; other names are their own source
    assert new.per_image_on("val").sources[:2] == ["img00", "img01"]
    assert [source_of(n) for n in ("chelsea@0,32", "fashion_mnist/test/12")] == [
        "chelsea",
        "fashion_mnist/test/12",
    ]


@pytest.mark.parametrize("bad", ["psnr,name\n1,x\n", "name,psnr\nx\n", "split,psnr\nval,1\n"])
def test_a_damaged_per_image_file_is_named(tmp_path, bad):
    path = tmp_path / "per_image.csv"
    path.write_text(bad)
    with pytest.raises(ValueError, match="per_image.csv"):
        read_per_image(path)


def test_a_relaunch_duplicate_counts_once(tmp_path, make_run, fakes):
    """The same configuration and seed finished twice (a re-launch into another sweep
    dir): one seed, the newer eval.json; the other is listed as a duplicate."""
    first, second = tmp_path / "first", tmp_path / "second"
    make_run(first, "vq_s0", "vq", seed=0, mtime=1_000_000)
    make_run(first, "vq_s1", "vq", seed=1)
    newer = fakes.shifted(fakes.base_values(), 1.0, 0.0, seed=0)
    make_run(second, "vq_s0", "vq", seed=0, values=newer, mtime=2_000_000)
    (make_run(second, "vq_s1", "vq", seed=1) / "eval.json").unlink()  # still running there
    (row,) = group_runs(collect_sweeps([first, second]))
    assert row.seeds == [0, 1] and [r.rel for r in row.runs] == ["second/vq_s0", "first/vq_s1"]
    assert [(d.rel, k.rel) for d, k in row.duplicates] == [
        ("first/vq_s0", "second/vq_s0"),
        ("second/vq_s1", "first/vq_s1"),
    ]
    assert row.finished[0].results["psnr"] == pytest.approx(newer["psnr"].mean())
    rep = report([first, second], out=tmp_path / "out", draw=False)
    md = rep.markdown.read_text()
    assert "4 runs, 3 finished, 1 missing, 2 duplicates set aside" in md
    assert (
        "- `first/vq_s0`: the same configuration and seed as `second/vq_s0` (older"
        " eval.json): set aside, counted once" in md
    )
    assert "- `second/vq_s1`: the same configuration and seed as `first/vq_s1` (unfinished)" in md
    assert "None: every row's run has its eval.json." in md  # the unfinished one is a dup
    with open(rep.csv, newline="") as f:
        roles = {r["run"]: r["role"] for r in csv.DictReader(f)}
    assert roles["first/vq_s0"] == "duplicate of second/vq_s0" and roles["second/vq_s0"] == "seed"
    with open(rep.summary, newline="") as f:
        (summary,) = csv.DictReader(f)
    assert (summary["n_seeds"], summary["n_duplicates"]) == ("2", "2")


def test_the_main_budget_of_a_row(tmp_path, make_run):
    """The budget a row reports: the most seeds at one setting, then the fewest settings
    (a selection sweep tries many), then one whose double was run (the budget check);
    ``steps`` (--steps) names it outright."""

    def budget_of(layout, steps=None, keys=("trainer.lr",)):
        root = tmp_path / str(len(list(tmp_path.iterdir())))
        for i, (max_steps, lr, seed) in enumerate(layout):
            extra = {"trainer.lr": lr}
            make_run(root, f"r{i}", "vq", seed=seed, max_steps=max_steps, extra=extra)
        return main_budget(collect(root), keys, steps)

    study = [(50, lr, 0) for lr in (1e-4, 3e-4, 1e-3)] + [(100, 3e-4, s) for s in (0, 1, 2)]
    assert budget_of([*study, (200, 3e-4, 0)]) == 100  # 3 seeds at 100
    assert budget_of([(100, 3e-4, 0), (200, 3e-4, 0)]) == 100  # 200 is 100's budget check
    selection = [(50, lr, 0) for lr in (1e-4, 3e-4, 1e-3)]
    assert budget_of([*selection, (100, 3e-4, 0)]) == 100  # 50 tried three values
    assert budget_of([(100, 3e-4, 0), (200, 3e-4, 0)], steps=200) == 200
    assert budget_of([(100, 3e-4, 0)], steps=400) == 100  # no run has it: the default
