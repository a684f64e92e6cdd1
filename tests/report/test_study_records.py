"""The study's committed run records (``experiments/study_cpu/runs_5000``): today's report
code reads them, and what the study's README states about them holds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from dcvq.config.diff import result_changes
from dcvq.report import collect, config_gain_last_fifth, group_runs, report
from dcvq.report.verdicts import NO_VERDICT, SUPPORTED, dual_beats_vq

RECORDS = Path(__file__).resolve().parents[2] / "experiments" / "study_cpu" / "runs_5000"


def test_the_committed_runs_read_back_with_the_readmes_numbers():
    runs = collect(RECORDS)
    assert len(runs) >= 10 and all(r.ok and r.step == 5000 for r in runs)
    # from before per_image.csv's split column: every row is eval.json's split, val
    assert all(len(r.per_image_on("val").values["psnr"]) == 342 for r in runs)
    assert all(r.results_on("test") is None and set(r.per_image) == {"val"} for r in runs)
    assert {r.per_image_on("val").sources[0] for r in runs} == {"chelsea"}
    # they trained on a GPU and on the CPU: pooled as the study did, with --pool-devices
    configs = group_runs(runs, pool_devices=True)
    rows = {(c.representative.quantizer, c.codebook_size): c for c in configs}
    vq128, vq256 = rows[("vq", 128)], rows[("vq", 256)]
    assert vq128.seeds == [0, 1, 2] and vq256.seeds == [0, 1, 2]
    # the convergence aim: under 0.3 dB over the last fifth, on every seed
    for row, mean in ((vq128, 0.13), (vq256, 0.22)):
        gain = config_gain_last_fifth(row)
        assert round(gain.mean, 2) == mean and max(gain.values) < 0.3
    # no test split and no run at twice the budget: no verdict, though every interval
    # (over images, the two source photos and the seeds) says better
    verdict = dual_beats_vq([configs])
    assert verdict.outcome == NO_VERDICT and verdict.indication == SUPPORTED
    assert any("no test split" in r for r in verdict.reasons)
    assert any("budget check: not run" in r for r in verdict.reasons)
    pair = "T-128/S-128, 128 codes − VQ-GAN, 128 codes"
    assert any(pair in e and "ΔPSNR +2.53" in e for e in verdict.evidence)
    # not pooled, the rows trained on both devices split: S-128/S-128 (seeds 0, 1 on the
    # CPU, 2 on the GPU)
    split = [c for c in group_runs(runs) if c.representative.quantizer == "s128_s128"]
    assert sorted(c.seeds for c in split) == [[0, 1], [2]]


def test_the_committed_report_is_rebuilt_with_pool_devices(tmp_path):
    """`python -m dcvq.report experiments/study_cpu/runs_5000 --out experiments/study_cpu
    --pool-devices` rebuilds the committed summary.csv and paired.csv: every column they
    share has the same value (the new columns aside)."""
    rep = report(RECORDS, out=tmp_path, pool_devices=True, draw=False)
    for name in ("summary.csv", "paired.csv"):
        with open(RECORDS.parent / name, newline="") as f:
            committed = list(csv.DictReader(f))
        with open(tmp_path / name, newline="") as f:
            rebuilt = list(csv.DictReader(f))
        assert len(committed) == len(rebuilt), name
        for old, new in zip(committed, rebuilt, strict=True):
            assert {k: v for k, v in old.items() if k in new} == {
                k: new[k] for k in old if k in new
            }, name
    md = rep.markdown.read_text()
    assert "only 2 source photos: the interval over photos cannot be wider" in md
    assert "**No test split** for 7 of 7 rows" in md and "**supported**" not in md


def test_the_preset_is_the_studys_config():
    """Each record's config is `experiment=study_cpu` with its option, size and seed, by
    the re-launch rule (the GPU runs trained with trainer.device=cuda trainer.precision=fp32,
    which is what the preset runs on the CPU): the study's commands, re-launched into a
    copy of the records, train only what is missing."""
    from hydra import compose, initialize_config_dir

    from dcvq.config import CONF_DIR, register

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for run in sorted(RECORDS.iterdir()):
            saved = json.loads((run / "eval.json").read_text())["config"]
            option, size, seed = run.name.rsplit("_", 2)
            overrides = [f"quantizer={option}", f"codebook.size={size[1:]}", f"seed={seed[1:]}"]
            cfg = compose(config_name="train", overrides=["experiment=study_cpu", *overrides])
            assert result_changes(saved, cfg) == [], run.name
