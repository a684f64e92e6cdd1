"""dcvq.report.rate: bits per image for every quantizer option and baseline, read from
the config and eval.json's codebooks; the rate-distortion figure; and the verdict "dual
beats VQ-GAN at equal rate"."""

from __future__ import annotations

import csv
import json
import math

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from dcvq import report as rp
from dcvq.report.verdicts import NO_VERDICT, SUPPORTED, dual_beats_vq_at_equal_rate

#: (option or +baseline, bits per position): the study's 8x8 token grid (32x32, f4)
OPTIONS = [
    ("quantizer=vq", math.log2(128)),
    ("quantizer=s128_s128", 2 * math.log2(128)),
    ("quantizer=t128_s128", 2 * math.log2(128)),
    ("quantizer=t192_s64", 2 * math.log2(128)),
    ("quantizer=t64_s192", 2 * math.log2(128)),
    ("+baseline=gumbel", math.log2(1024)),  # the baselines set 1024 codes
    ("+baseline=cvq", math.log2(1024)),
    ("+baseline=vqvae", math.log2(1024)),
]


def test_bits_per_image_of_every_quantizer_and_baseline(tmp_path):
    """Each option composed as train.py would (experiment=study_cpu: 32x32 at f4, 64
    token positions), its eval.json codebooks named and sized as its quantizer class
    names them."""
    from dcvq.config import compose

    for i, (override, bits) in enumerate(OPTIONS):
        cfg = compose(["experiment=study_cpu", override])
        group, option = override.lstrip("+").split("=")
        job = tmp_path / f"{i}_{option}"
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
        choices = {"dataset": "samples", "quantizer": option if group == "quantizer" else None}
        choices |= {"baseline": option} if group == "baseline" else {}
        OmegaConf.save({"hydra": {"runtime": {"choices": choices}}}, job / ".hydra" / "hydra.yaml")
        quantizer = get_class(cfg.quantizer._target_)
        books = {n: {"size": cfg.codebook.size, "used": 1} for n in quantizer.codebook_names}
        prior = {"bits_per_token": 0.5 * bits}
        (job / "eval.json").write_text(json.dumps({"codebooks": books, "prior": prior}))
        (run,) = rp.collect(job)
        assert rp.positions(run) == 64, override
        assert rp.bits_per_image(run) == pytest.approx(64 * bits), override
        assert rp.prior_bits_per_image(run) == pytest.approx(32 * bits), override
    # the report writes them: summary.csv's bits_per_image, one per row
    rep = rp.report(tmp_path, draw=False)
    with open(rep.summary, newline="") as f:
        summary = {
            (r["quantizer"] or r["baseline"]): float(r["bits_per_image"]) for r in csv.DictReader(f)
        }
    assert summary == {
        "vq": 448,
        "s128_s128": 896,
        "t128_s128": 896,
        "t192_s64": 896,
        "t64_s192": 896,
        "gumbel": 640,
        "cvq": 640,
        "vqvae": 640,
    }


def test_positions_follow_resolution_and_downsampling(tmp_path, make_run):
    job = make_run(tmp_path, "a", "vq", extra={"model.ch_mult": [1, 1, 2, 2, 4]})
    cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
    OmegaConf.update(cfg, "dataset.resolution", 256)
    OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
    (run,) = rp.collect(tmp_path)
    assert rp.positions(run) == 256  # the paper's f16 at 256: 16x16 tokens
    assert rp.bits_per_image(run) == 256 * 9  # 512 codes


def test_dual_against_vq_gan_at_equal_rate(tmp_path, make_row):
    """Two 128-code codebooks spend 14 bits a position, as one of 16,384 codes: the dual
    row is compared with that VQ-GAN row; a dual row with no VQ-GAN row at its rate has
    no verdict, and the curve's interpolation where it brackets the rate (marked as such)."""
    root = tmp_path / "equal"
    for size, db in ((128, 0.0), (16384, 0.4)):
        make_row(root, f"vq{size}", "vq", db, size=size, budget_db=db)
    make_row(root, "t128", "t128_s128", 1.0, size=128, budget_db=1.2)
    sections = [rp.group_runs(rp.collect(root))]
    verdict = dual_beats_vq_at_equal_rate(sections)
    assert verdict.outcome == SUPPORTED and verdict.budget == "kept"
    (evidence,) = verdict.evidence
    assert "T-128/S-128, 128 codes − VQ-GAN, 16384 codes: ΔL1" in evidence
    assert "ΔPSNR +0.59" in evidence

    rep = rp.report(root)
    assert (root / "figures" / "rate_table2-samples.png") in rep.figures
    fig = rp.rate_figure(rep.sections[0].configs)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == [
        "448",
        "896",
    ]
    assert ax.get_legend_handles_labels()[1][0] == "VQ-GAN (vq) over codebook sizes"

    # no VQ-GAN row at 896 bits: no verdict; rows at 8,192 and 32,768 codes bracket it
    bracket = tmp_path / "bracket"
    for size, db in ((8192, 0.2), (32768, 0.6)):
        make_row(bracket, f"vq{size}", "vq", db, size=size)
    make_row(bracket, "t128", "t128_s128", 1.0, size=128)
    verdict = dual_beats_vq_at_equal_rate([rp.group_runs(rp.collect(bracket))])
    assert verdict.outcome == NO_VERDICT and verdict.indication is None
    (evidence,) = verdict.evidence
    assert "no verdict: no VQ-GAN row at 896 bits per image" in evidence
    assert "(interpolation, not a verdict: the VQ-GAN curve gives 20.4" in evidence
