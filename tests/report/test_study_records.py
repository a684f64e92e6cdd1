"""The study's committed run records (``experiments/study_cpu/runs_5000``): today's report
code reads them, and what the study's README states about them holds."""

from __future__ import annotations

from pathlib import Path

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
