"""dcvq.report.verdicts: each claim marked supported, contradicted, inconclusive, not run
or not measured, on fake rows built to be each."""

from __future__ import annotations

import json

import pytest

from dcvq.report import collect, group_runs
from dcvq.report.verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_MEASURED,
    NOT_RUN,
    SUPPORTED,
    dual_beats_vq,
    judge_claims,
    larger_codebook,
    larger_global_half,
    render_verdicts,
    transformer_beats_plain,
    usage,
)


def section(root):
    return [group_runs(collect(root))]


@pytest.fixture
def ablation(tmp_path, make_run, fakes):
    """Every dual row beats vq by >= 0.5 dB; T-128/S-128 is *worse* than S-128/S-128;
    T-192/S-64 and T-64/S-192 differ by nothing but noise; both sizes grow with 1024."""
    base = fakes.base_values()
    noise_seeds = iter(range(100, 200))

    def run(name, option, db, noise=0.05, size=512, seed=0, **kw):
        values = fakes.shifted(base, db, noise, seed=next(noise_seeds))
        make_run(tmp_path, name, option, size=size, seed=seed, values=values, **kw)

    run("vq", "vq", 0.0)
    run("vq_1024", "vq", 0.3, size=1024)
    run("s128", "s128_s128", 2.0)
    for seed in (0, 1):
        run(f"t128_{seed}", "t128_s128", 1.0, seed=seed)
    run("t128_1024", "t128_s128", 1.5, size=1024)
    # same mean, independent noise far larger than any difference: no verdict either way
    run("t192", "t192_s64", 0.7, noise=1.0)
    run("t64", "t64_s192", 0.7, noise=1.0)
    return tmp_path


def test_paired_claims_on_constructed_rows(ablation):
    sections = section(ablation)
    dual = dual_beats_vq(sections)
    assert dual.outcome == SUPPORTED
    assert len(dual.evidence) == 5  # four dual rows at 512 against vq 512, T-128 at 1024
    assert any("T-128/S-128, 1024 codes − VQ-GAN, 1024 codes" in e for e in dual.evidence)
    first = next(e for e in dual.evidence if "T-128/S-128, 512 codes − VQ-GAN" in e)
    assert "ΔPSNR +1.0" in first and "seeds: 2 vs 1, images: 40" in first
    assert "ΔL1 -0.0" in first and ": better" in first

    plain = transformer_beats_plain(sections)
    assert plain.outcome == CONTRADICTED and "ΔPSNR -1.0" in plain.evidence[0]
    half = larger_global_half(sections)  # (iii) and (v) against (iv), as the paper
    assert half.outcome == INCONCLUSIVE and len(half.evidence) == 2
    assert "T-192/S-64, 512 codes − Dual Codebook T-64/S-192" in half.evidence[0]
    assert "T-128/S-128, 512 codes − Dual Codebook T-64/S-192" in half.evidence[1]
    bigger = larger_codebook(sections)
    assert bigger.outcome == SUPPORTED and len(bigger.evidence) == 2  # dual and vq doubled
    assert all("ΔL1" not in e for e in bigger.evidence)  # PSNR only

    md = "\n".join(render_verdicts(judge_claims(sections)))
    assert md.startswith("## Verdicts")
    marks = [ln.split("**")[1] for ln in md.splitlines() if ln.startswith("- ")]
    assert marks == [SUPPORTED, CONTRADICTED, INCONCLUSIVE, SUPPORTED, SUPPORTED]


def test_missing_rows_and_missing_per_image_files(ablation, tmp_path_factory, make_run):
    only = tmp_path_factory.mktemp("only_vq")
    make_run(only, "vq", "vq")
    found = judge_claims(section(only))
    assert [v.outcome for v in found] == [NOT_RUN] * 5
    assert render_verdicts(found) == []  # no section at all without the rows
    # rows there, per-image results not: not measured rather than a verdict
    for job in ablation.iterdir():
        (job / "per_image.csv").unlink()
    dual = dual_beats_vq(section(ablation))
    assert dual.outcome == NOT_MEASURED and "per_image.csv: missing" in dual.evidence[0]


@pytest.mark.parametrize(
    ("usages", "outcome"),
    [
        ([(99.0, 96.0), (95.5, 100.0)], SUPPORTED),
        ([(99.0, 96.0), (99.0, 79.0)], CONTRADICTED),
        ([(99.0, 96.0), (90.0, 99.0)], INCONCLUSIVE),
    ],
)
def test_usage_thresholds(tmp_path, make_run, usages, outcome):
    for option, u in zip(("t128_s128", "s128_s128"), usages, strict=True):
        make_run(tmp_path, option, option, usage=u)
    make_run(tmp_path, "vq", "vq", usage=10.0)  # VQ-GAN's collapse is not the claim's
    verdict = usage(section(tmp_path))
    assert verdict.outcome == outcome and len(verdict.evidence) == 2
    assert "≥ 95%" in verdict.rule and "< 80%" in verdict.rule


def test_a_collapsed_codebook_contradicts_the_usage_claim(tmp_path, make_run):
    """100% of the global codes used, but they are one vector: judged on distinct codes."""
    for option in ("t128_s128", "s128_s128"):
        make_run(tmp_path, option, option, usage=(100.0, 99.0))
    path = tmp_path / "t128_s128" / "eval.json"
    result = json.loads(path.read_text())
    for name, distinct in (("global", 1), ("local", 507)):
        result["codebooks"][name] |= {"distinct": distinct, "distinct_usage": distinct / 5.12}
    path.write_text(json.dumps(result))
    verdict = usage(section(tmp_path))
    assert verdict.outcome == CONTRADICTED and "distinct" in verdict.rule
    evidence = next(e for e in verdict.evidence if "T-128" in e or "t128" in e)
    assert "global 0.2% distinct" in evidence and "local 99.0% distinct" in evidence
    # without distinct counts (eval.json of an older run) the same usage supports it
    del (
        result["codebooks"]["global"]["distinct_usage"],
        result["codebooks"]["local"]["distinct_usage"],
    )
    path.write_text(json.dumps(result))
    assert usage(section(tmp_path)).outcome == SUPPORTED


def test_a_gap_retraining_can_undo_is_inconclusive(tmp_path, make_run, fakes):
    """Three seeds of T-128/S-128 land at +0.9, -0.8 and +1.0 dB over three steady seeds
    of S-128/S-128: averaged over seeds, every image gains ~0.37 dB (the image interval
    alone says better), but the seeds' own spread says a retraining could reverse it."""
    base = fakes.base_values()
    for seed, (plain, transformer) in enumerate([(0.0, 0.9), (0.02, -0.8), (-0.02, 1.0)]):
        for option, db in (("s128_s128", plain), ("t128_s128", transformer)):
            values = fakes.shifted(base, db, 0.05, seed=10 * seed + len(option))
            make_run(tmp_path, f"{option}_{seed}", option, seed=seed, values=values)
    verdict = transformer_beats_plain(section(tmp_path))
    assert verdict.outcome == INCONCLUSIVE
    psnr = next(p for p in verdict.evidence[0].split("; ") if p.startswith("ΔPSNR"))
    assert "over seeds +0.37 [-2.1" in psnr and ": inconclusive (seeds: 3 vs 3" in psnr

    # the same rows with the seeds in agreement: both intervals say better
    steady = tmp_path / "steady"
    for seed, db in enumerate([0.35, 0.4, 0.38]):
        for option, shift in (("s128_s128", 0.0), ("t128_s128", db)):
            values = fakes.shifted(base, shift, 0.05, seed=10 * seed + len(option))
            make_run(steady, f"{option}_{seed}", option, seed=seed, values=values)
    assert transformer_beats_plain(section(steady)).outcome == SUPPORTED
