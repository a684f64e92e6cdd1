"""dcvq.report.cluster: the interval that resamples source photos is wider than the
per-image one when the tiles of a photo move together, about as wide when they do not;
and the report writes it (paired.csv, report.md) with each photo's mean difference."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from dcvq import report as rp
from dcvq.report.cluster import RESAMPLES, cluster_intervals, source_means


def tiles(n_photos: int, per_photo: int) -> list[str]:
    return [f"photo{p}@{t},0" for p in range(n_photos) for t in range(per_photo)]


def widths(diffs: np.ndarray, names: list[str]) -> tuple[float, float]:
    """(cluster interval width, paired t-interval width) of ``diffs``."""
    sources = [rp.source_of(n) for n in names]
    c = cluster_intervals({"psnr": diffs}, sources)["psnr"]
    p = rp.paired("psnr", diffs, np.zeros_like(diffs))
    assert c.mean == pytest.approx(p.mean_diff)
    return c.high - c.low, p.high - p.low


def test_correlated_tiles_widen_the_interval_independent_ones_do_not():
    rng = np.random.default_rng(0)
    names = tiles(30, 10)
    # each photo shifts all its tiles together (sd 1 dB), tiles add little (sd 0.1 dB)
    photo = np.repeat(rng.normal(0.5, 1.0, 30), 10)
    correlated = photo + rng.normal(0, 0.1, 300)
    cluster, plain = widths(correlated, names)
    assert cluster > 2.5 * plain  # ~sqrt(10): 30 photos, not 300 images, are the samples
    # every tile on its own (the same spread): the two intervals agree
    independent = rng.normal(0.5, 1.0, 300)
    cluster, plain = widths(independent, names)
    assert 0.85 < cluster / plain < 1.15
    # images that are each their own source (Fashion-MNIST): the image bootstrap
    mnist = [f"fashion_mnist/test/{i}" for i in range(300)]
    cluster, plain = widths(independent, mnist)
    assert 0.85 < cluster / plain < 1.15


def test_the_interval_is_seeded_and_needs_two_photos():
    rng = np.random.default_rng(1)
    names = tiles(5, 4)
    sources = [rp.source_of(n) for n in names]
    d = {"psnr": rng.normal(0, 1, 20), "l1": rng.normal(0, 1, 20)}
    d["psnr"][3] = np.inf  # an exact reconstruction's PSNR: left out
    first, again = cluster_intervals(d, sources), cluster_intervals(d, sources)
    assert first == again and first["psnr"].n_images == 19 and first["l1"].n_images == 20
    assert first["psnr"].n_sources == 5 and RESAMPLES >= 2000
    one = cluster_intervals({"psnr": np.ones(4)}, ["a"] * 4)["psnr"]
    assert (one.mean, one.low, one.high, one.n_sources) == (1.0, None, None, 1)
    means = source_means(np.array([1.0, 3.0, np.nan, 5.0]), ["a", "a", "b", "b"])
    assert [(m.source, m.n_images, m.mean_diff) for m in means] == [("a", 2, 2.0), ("b", 1, 5.0)]


def test_the_report_writes_the_photo_interval_and_each_photos_difference(tmp_path, make_row):
    make_row(tmp_path, "vq", "vq", 0.0)
    make_row(tmp_path, "t128", "t128_s128", 1.0)
    rep = rp.report(tmp_path, draw=False)
    with open(rep.paired, newline="") as f:
        psnr = next(r for r in csv.DictReader(f) if r["metric"] == "psnr")
    assert (psnr["split"], psnr["n_images"], psnr["n_sources"]) == ("test", "40", "10")
    low, high = float(psnr["cluster_low"]), float(psnr["cluster_high"])
    assert low < float(psnr["mean_diff"]) < high and psnr["outcome_cluster"] == "better"
    assert psnr["outcome"] == "better" and psnr["outcome_seeds"] == "better"
    (comp,) = rep.comparisons
    assert (comp.cluster["psnr"].low, comp.cluster["psnr"].high) == (low, high)
    with open(rep.per_photo, newline="") as f:
        photos = [r for r in csv.DictReader(f) if r["metric"] == "psnr"]
    assert [r["photo"] for r in photos] == [f"photo{i}" for i in range(10)]
    assert {r["n_images"] for r in photos} == {"4"}
    # each photo's mean of the per-image differences (each averaged over seeds first)
    mine, ref = (rp.stats.seed_mean_per_image(c)[0] for c in (comp.config, comp.reference))
    d = mine.values["psnr"] - ref.values["psnr"]
    assert float(photos[0]["mean_diff"]) == pytest.approx(d[:4].mean())
    md = rep.markdown.read_text()
    assert "#### Per source photo" in md and "| `photo0` | 4 | +" in md
    assert "over source photos (cluster bootstrap over source photos: 4,000 resamples" in md
