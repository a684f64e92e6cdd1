"""The study's committed run records (``experiments/study_cpu/runs_5000``): today's report
code reads them, and what the study's README states about them holds."""

from __future__ import annotations

import json
from pathlib import Path

from dcvq.config.diff import result_changes
from dcvq.report import collect, config_gain_last_fifth, group_runs
from dcvq.report.verdicts import SUPPORTED, dual_beats_vq

RECORDS = Path(__file__).resolve().parents[2] / "experiments" / "study_cpu" / "runs_5000"


def test_the_committed_runs_read_back_with_the_readmes_numbers():
    runs = collect(RECORDS)
    assert len(runs) >= 10 and all(r.ok and r.step == 5000 for r in runs)
    assert all(r.per_image is not None and len(r.per_image.values["psnr"]) == 342 for r in runs)
    configs = group_runs(runs)
    rows = {(c.representative.quantizer, c.codebook_size): c for c in configs}
    vq128, vq256 = rows[("vq", 128)], rows[("vq", 256)]
    assert vq128.seeds == [0, 1, 2] and vq256.seeds == [0, 1, 2]
    # the convergence aim: under 0.3 dB over the last fifth, on every seed
    for row, mean in ((vq128, 0.13), (vq256, 0.22)):
        gain = config_gain_last_fifth(row)
        assert round(gain.mean, 2) == mean and max(gain.values) < 0.3
    verdict = dual_beats_vq([configs])
    assert verdict.outcome == SUPPORTED
    pair = "T-128/S-128, 128 codes − VQ-GAN, 128 codes"
    assert any(pair in e and "ΔPSNR +2.53" in e for e in verdict.evidence)


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
