"""The report with today's quantizers' rows (FSQ, LFQ, SimVQ, VQ-GAN with the rotation
trick) and the codebooks' geometry over training steps."""

from __future__ import annotations

import json
import math

import pytest
from omegaconf import OmegaConf
from PIL import Image

from dcvq import report as rp
from dcvq.report.figures import codebook_curve, codebook_geometry_figure
from dcvq.report.stats import find_reference

TARGETS = {
    "fsq": "dcvq.quantizers.FSQQuantizer",
    "lfq": "dcvq.quantizers.LFQQuantizer",
    "simvq": "dcvq.quantizers.SimVQQuantizer",
}


def as_baseline(job, baseline: str, implied_size: int) -> None:
    """A fake vq run turned into a ``+baseline=<baseline>`` run whose eval.json records
    the quantizer's implied size (FSQ at codebook.size=1024: 1000 codes)."""
    cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
    cfg.quantizer = {"_target_": TARGETS[baseline], "codebook_size": "${codebook.size}"}
    OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
    hydra = OmegaConf.load(job / ".hydra" / "hydra.yaml")
    hydra.hydra.runtime.choices.baseline = baseline
    hydra.hydra.runtime.choices.quantizer = None
    OmegaConf.save(hydra, job / ".hydra" / "hydra.yaml")
    results = json.loads((job / "eval.json").read_text())
    results["config"] = OmegaConf.to_container(cfg, resolve=False)
    book = results["codebooks"]["codebook"]
    book["size"] = implied_size
    book["counts"] = book["counts"][:implied_size]
    (job / "eval.json").write_text(json.dumps(results))


def test_new_baselines_are_named_and_their_rate_is_their_implied_size(tmp_path, make_run):
    for name, size in (("fsq", 1000), ("lfq", 1024), ("simvq", 1024)):
        as_baseline(make_run(tmp_path, name, "vq", size=1024), name, size)
    make_run(tmp_path, "vq", "vq", size=1024)
    runs = {r.rel: r for r in rp.collect(tmp_path)}
    assert {rel: r.model for rel, r in runs.items()} == {
        "fsq": "FSQ", "lfq": "LFQ", "simvq": "SimVQ", "vq": "VQ-GAN"}  # fmt: skip
    # f4 at 32 px: 8 x 8 positions, log2 of eval.json's size each
    assert rp.bits_per_image(runs["fsq"]) == pytest.approx(64 * math.log2(1000))
    assert rp.bits_per_image(runs["lfq"]) == rp.bits_per_image(runs["simvq"]) == 64 * 10
    # the class alone names the row too (a run composed without +baseline)
    assert rp.QUANTIZER_NAMES["FSQQuantizer"] == "FSQ"


def test_the_rotation_trick_is_its_own_row_never_the_papers_vq_gan(tmp_path, make_run):
    make_run(tmp_path, "vq", "vq", size=128)
    make_run(tmp_path, "vq_rot", "vq", size=128, extra={"quantizer.rotation_trick": True})
    # an explicit false is the plain row (today's vq.yaml writes the key)
    make_run(tmp_path, "vq_s1", "vq", size=128, seed=1, extra={"quantizer.rotation_trick": False})
    configs = rp.group_runs(rp.collect(tmp_path))
    labels = sorted(c.label for c in configs)
    assert labels == ["VQ-GAN", "VQ-GAN [quantizer.rotation_trick=true]"]
    plain = next(c for c in configs if c.label == "VQ-GAN")
    rotated = next(c for c in configs if c is not plain)
    assert plain.seeds == [0, 1]
    assert find_reference(rotated, configs) is plain  # compared with the paper's VQ-GAN


def geometry_history(job, points: list[tuple[int, dict[str, dict[str, float]]]]) -> None:
    """metrics.jsonl's evaluations with their codebooks' statistics."""
    with open(job / "metrics.jsonl", "w") as f:
        for step, books in points:
            f.write(json.dumps({"step": step, "psnr": 20.0, "codebooks": books}) + "\n")


def test_codebook_geometry_over_steps_mean_over_seeds(tmp_path, make_run):
    def books(distinct: int, rank: float, nn: float, names=("codebook",)) -> dict:
        stats = {"distinct": distinct, "effective_rank": rank, "nn_distance_p5": nn}
        return {n: dict(stats) for n in names}

    for seed, shift in ((0, 0), (1, 2)):
        job = make_run(tmp_path, f"vq_s{seed}", "vq", seed=seed)
        geometry_history(
            job, [(20, books(10 + shift, 3.0, 0.5)), (60, books(20 + shift, 5.0, 0.2))]
        )
    dual = make_run(tmp_path, "t128", "t128_s128")
    geometry_history(dual, [(20, books(4, 2.0, 0.1, ("global", "local")))])
    configs = rp.group_runs(rp.collect(tmp_path))
    vq = next(c for c in configs if c.representative.quantizer == "vq")
    steps, mean, low, high = codebook_curve(vq, "codebook", "distinct")
    assert steps.tolist() == [20, 60] and mean.tolist() == [11, 21]
    assert (low.tolist(), high.tolist()) == ([10, 20], [12, 22])
    fig = codebook_geometry_figure(configs)
    titles = [ax.get_title() for ax in fig.axes]
    # a column per codebook name (global, local, codebook), a row per statistic
    assert titles[:3] == [
        "global: distinct codes",
        "local: distinct codes",
        "codebook: distinct codes",
    ]
    assert len(titles) == 9
    rep = rp.report(tmp_path)
    path = tmp_path / "figures" / "codebooks_table2-samples.png"
    assert path in rep.figures and f"](figures/{path.name})" in rep.markdown.read_text()
    with Image.open(path) as im:
        im.verify()


def test_no_geometry_figure_for_runs_from_before_it(tmp_path, make_run):
    make_run(tmp_path, "vq", "vq", history=[(20, 10.0), (60, 12.0)])
    assert codebook_geometry_figure(rp.group_runs(rp.collect(tmp_path))) is None


def test_only_the_statistics_the_runs_recorded_get_panels(tmp_path, make_run):
    """Runs that counted distinct codes before the geometry existed: one row of panels."""
    job = make_run(tmp_path, "vq", "vq")
    geometry_history(
        job, [(20, {"codebook": {"distinct": 3}}), (60, {"codebook": {"distinct": 5}})]
    )
    fig = codebook_geometry_figure(rp.group_runs(rp.collect(tmp_path)))
    assert [ax.get_title() for ax in fig.axes] == ["codebook: distinct codes"]
