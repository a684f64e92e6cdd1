"""dcvq.report.figures and the training-curve numbers: metrics with their intervals over
seeds, PSNR over steps with the last fifth's gain, one reconstruction per configuration."""

from __future__ import annotations

import csv

import pytest
from PIL import Image

from dcvq import report as rp

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def test_psnr_gain_over_the_last_fifth(tmp_path, make_run, fakes):
    final = float(fakes.base_values()["psnr"].mean())
    # evaluations at 0 and 50, the final one at 100: PSNR at 80 is interpolated (final - 2)
    make_run(tmp_path, "a", "vq", history=[(0, final - 10), (50, final - 5)])
    make_run(tmp_path, "b", "vq", seed=1, history=[(80, final - 1)])  # +1 dB
    make_run(tmp_path, "c", "t128_s128", history=[])  # only the final evaluation
    runs = {r.rel: r for r in rp.collect(tmp_path)}
    assert rp.psnr_gain_last_fifth(runs["a"]) == pytest.approx(2.0)
    assert rp.psnr_gain_last_fifth(runs["b"]) == pytest.approx(1.0)
    assert rp.psnr_gain_last_fifth(runs["c"]) is None
    vq, dual = rp.group_runs(runs.values())
    gain = rp.config_gain_last_fifth(vq)
    assert gain.mean == pytest.approx(1.5) and gain.ci95 == pytest.approx(12.706 * 0.5, 1e-4)
    steps, mean, low, high = rp.psnr_curve(vq)
    assert steps.tolist() == [0, 50, 80, 100]
    assert mean[-1] == pytest.approx(final) and (low[-1], high[-1]) == (mean[-1], mean[-1])
    assert rp.config_gain_last_fifth(dual).mean is None


def test_figures_of_a_sweep_with_seeds(tmp_path, make_run):
    history = [(20, 10.0), (40, 14.0), (60, 17.0), (80, 18.5)]
    make_run(tmp_path, "vq", "vq", history=history, colour=RED)
    # seed 1 first on disk: the figure must still show seed 0's reconstructions
    for seed, colour in ((1, GREEN), (0, BLUE)):
        make_run(tmp_path, f"t128_{seed}", "t128_s128", seed=seed, history=history, colour=colour)
    rep = rp.report(tmp_path)
    names = sorted(p.name for p in rep.figures)
    assert names == [
        f"{k}_table2-samples.png" for k in ("metrics", "psnr", "rate", "reconstructions", "usage")
    ]
    for path in rep.figures:
        with Image.open(path) as im:
            im.verify()
    with Image.open(tmp_path / "figures" / "reconstructions_table2-samples.png") as im:
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
    assert RED in colours and BLUE in colours and GREEN not in colours
    with open(rep.summary, newline="") as f:
        gains = {r["quantizer"]: r["psnr_gain_last_fifth_mean"] for r in csv.DictReader(f)}
    final = rp.collect(tmp_path)[0].results["psnr"]
    assert float(gains["vq"]) == pytest.approx(final - 18.5)

    # the error bars are the 95% t-intervals over seeds; one seed: no bar
    configs = rp.group_runs(rp.collect(tmp_path))
    fig = rp.metrics_figure(configs)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["PSNR", "L1", "L2", "SSIM", "usage global %", "usage local %", "usage %"]
    psnr_ax = fig.axes[0]
    bars = [c for c in psnr_ax.containers if c.has_yerr]
    dual = next(c for c in configs if c.representative.model == "Dual Codebook")
    seeds = [r.results["psnr"] for r in dual.finished]
    (segment,) = bars[0].lines[2][0].get_segments()
    assert (segment[1, 1] - segment[0, 1]) / 2 == pytest.approx(rp.ci95(seeds))
    (one_seed,) = bars[1].lines[2][0].get_segments()  # VQ-GAN
    assert one_seed[0, 1] == one_seed[1, 1]


def test_psnr_curve_needs_two_evaluations(tmp_path, make_run):
    make_run(tmp_path, "vq", "vq", history=[])
    assert rp.psnr_curve_figure(rp.group_runs(rp.collect(tmp_path))) is None
    make_run(tmp_path, "t128", "t128_s128")
    fig = rp.psnr_curve_figure(rp.group_runs(rp.collect(tmp_path)))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["last fifth", "Dual Codebook T-128/S-128 (+0.40 dB in the last fifth)"]
