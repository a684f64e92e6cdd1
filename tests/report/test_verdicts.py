"""dcvq.report.verdicts: each claim marked supported, contradicted, inconclusive, not run
or not measured, on fake rows built to be each; and no verdict (never in bold) where the
evidence falls short: too few seeds, no test split, no or a flipped budget check."""

from __future__ import annotations

import json
import shutil

import pytest

from dcvq.report import collect, group_runs, psnr_curve_figure
from dcvq.report.verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    NO_VERDICT,
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


def section(root, **kw):
    return [group_runs(collect(root), **kw)]


#: (name, option, dB over the base, codebook size, per-image noise): every dual row beats
#: vq by >= 0.5 dB; T-128/S-128 is *worse* than S-128/S-128; T-192/S-64 and T-64/S-192
#: differ by nothing but noise; both sizes grow with 1024
ROWS = [
    ("vq", "vq", 0.0, 512, 0.05),
    ("vq_1024", "vq", 0.3, 1024, 0.05),
    ("s128", "s128_s128", 2.0, 512, 0.05),
    ("t128", "t128_s128", 1.0, 512, 0.05),
    ("t128_1024", "t128_s128", 1.5, 1024, 0.05),
    ("t192", "t192_s64", 0.7, 512, 1.0),
    ("t64", "t64_s192", 0.7, 512, 1.0),
]


@pytest.fixture(scope="module")
def ablation(tmp_path_factory, make_row):
    """Three seeds a row with a test split, and each row at twice the budget (the same
    order of rows there)."""
    root = tmp_path_factory.mktemp("ablation")
    for name, option, db, size, noise in ROWS:
        make_row(root, name, option, db, size=size, noise=noise, budget_db=db + 0.5)
    return root


def test_paired_claims_on_constructed_rows(ablation):
    sections = section(ablation)
    dual = dual_beats_vq(sections)
    assert dual.outcome == SUPPORTED and dual.budget == "kept"
    assert len(dual.evidence) == 5  # four dual rows at 512 against vq 512, T-128 at 1024
    assert any("T-128/S-128, 1024 codes − VQ-GAN, 1024 codes" in e for e in dual.evidence)
    first = next(e for e in dual.evidence if "T-128/S-128, 512 codes − VQ-GAN" in e)
    assert "ΔPSNR +1.0" in first and "seeds: 3 vs 3, images: 40 from 10 source photos" in first
    assert "photos [+0.9" in first and "ΔL1 -0.0" in first and ": better" in first
    assert "budget check (200 steps): kept: ΔL1" in first

    plain = transformer_beats_plain(sections)
    assert plain.outcome == CONTRADICTED and "ΔPSNR -1.0" in plain.evidence[0]
    half = larger_global_half(sections)  # (iii) and (v) against (iv), as the paper
    assert half.outcome == INCONCLUSIVE and len(half.evidence) == 2
    assert half.budget is None  # not a decisive claim: no budget check asked
    assert "T-192/S-64, 512 codes − Dual Codebook T-64/S-192" in half.evidence[0]
    assert "T-128/S-128, 512 codes − Dual Codebook T-64/S-192" in half.evidence[1]
    bigger = larger_codebook(sections)
    assert bigger.outcome == SUPPORTED and len(bigger.evidence) == 2  # dual and vq doubled
    assert all("ΔL1" not in e for e in bigger.evidence)  # PSNR only

    found = judge_claims(sections)
    md = "\n".join(render_verdicts(found, sections[0]))
    assert md.startswith("## Verdicts") and "Numbers and verdicts are on the test split" in md
    assert [v.shown for v in found] == [
        f"**{SUPPORTED}**",
        f"{NO_VERDICT} (5 rows without a partner to compare with)",  # equal rate
        f"**{CONTRADICTED}**",
        f"**{INCONCLUSIVE}**",
        f"**{SUPPORTED}**",
        f"**{SUPPORTED}**",
    ]
    claims = [ln for ln in md.splitlines() if ln.startswith("- ")]
    assert all(v.shown in ln for v, ln in zip(found, claims, strict=True))
    assert "no VQ-GAN row at 1,152 bits per image" in md  # 64 positions x 2 x 9 bits


def test_no_verdict_below_the_evidence(tmp_path, make_row):
    """One seed a row, no test split (a 30-step sweep, say): the intervals' indication
    is printed, never a bold verdict."""
    for name, option, db, size, noise in ROWS:
        make_row(tmp_path, name, option, db, seeds=(0,), size=size, noise=noise, test=False)
    found = judge_claims(section(tmp_path))
    assert {v.outcome for v in found} == {NO_VERDICT}
    dual = found[0]
    assert "Dual Codebook S-128/S-128, 512 codes has 1 seed, a verdict needs 3" in dual.reasons
    assert any(r.startswith("no test split (7 rows on `val`") for r in dual.reasons)
    assert any(r.startswith("budget check: not run") for r in dual.reasons)
    md = "\n".join(render_verdicts(found, section(tmp_path)[0]))
    assert "**" not in md.split("## Verdicts")[1].split("\n- ", 1)[1]
    assert "**No test split** for 7 of 7 rows" in md
    assert "no verdict (" in md and "the numbers alone say: inconclusive" in md
    # usage needs 2 seeds and a test split
    assert found[-1].indication == SUPPORTED and found[-1].outcome == NO_VERDICT


def test_the_budget_check(tmp_path, make_row):
    """A decisive claim is supported only when the difference keeps its sign at twice the
    budget: kept, flipped (no verdict: not trained out), not run (no verdict)."""
    root = tmp_path / "kept"
    make_row(root, "vq", "vq", 0.0, budget_db=1.0)
    make_row(root, "t128", "t128_s128", 1.0, budget_db=1.8)
    kept = dual_beats_vq(section(root))
    assert kept.outcome == SUPPORTED and kept.budget == "kept"
    assert "budget check (200 steps): kept: ΔL1" in kept.evidence[0]
    assert "ΔPSNR +1.00 -> +0.79" in kept.evidence[0]
    # the curves show the runs at twice the budget dashed beside each row
    fig = psnr_curve_figure(section(root)[0])
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "VQ-GAN at 200 steps (budget check)" in legend

    flipped = tmp_path / "flipped"
    shutil.copytree(root, flipped)
    shutil.rmtree(flipped / "t128_2x")
    make_row(flipped, "t128", "t128_s128", 1.0, seeds=(), budget_db=0.5)  # below vq's 1.0
    verdict = dual_beats_vq(section(flipped))
    assert verdict.outcome == NO_VERDICT and verdict.indication == SUPPORTED
    assert verdict.budget == "flipped" and "ΔPSNR +1.00 -> -0.51" in verdict.evidence[0]
    assert "budget check: flipped (the rows were not trained out)" in verdict.reasons

    shutil.rmtree(root / "vq_2x")
    missing = dual_beats_vq(section(root))
    assert missing.outcome == NO_VERDICT and missing.budget == "not run"
    assert missing.reasons == [
        "budget check: not run: train each row again at twice its budget (trainer.max_steps=200)"
    ]
    # the budget runs are found by configuration, not by their directory: still a row of
    # two, and the 2x run is listed as the row's budget check
    (t128,) = [c for c in section(root)[0] if c.representative.quantizer == "t128_s128"]
    assert t128.seeds == [0, 1, 2] and [r.rel for r in t128.budget_runs] == ["t128_2x"]


def test_missing_rows_and_missing_per_image_files(tmp_path, make_row, make_run):
    only = tmp_path / "only_vq"
    make_run(only, "vq", "vq")
    found = judge_claims(section(only))
    assert [v.outcome for v in found] == [NOT_RUN] * 6
    assert render_verdicts(found) == []  # no section at all without the rows
    # rows there, per-image results not: not measured rather than a verdict
    rows = tmp_path / "rows"
    make_row(rows, "vq", "vq", 0.0)
    make_row(rows, "t128", "t128_s128", 1.0)
    for job in rows.iterdir():
        (job / "per_image.csv").unlink()
    dual = dual_beats_vq(section(rows))
    assert dual.outcome == NOT_MEASURED and "per_image.csv: missing" in dual.evidence[0]


@pytest.mark.parametrize(
    ("usages", "outcome"),
    [
        ([(99.0, 96.0), (95.5, 100.0)], SUPPORTED),
        ([(99.0, 96.0), (99.0, 79.0)], CONTRADICTED),
        ([(99.0, 96.0), (90.0, 99.0)], INCONCLUSIVE),
    ],
)
def test_usage_thresholds(tmp_path, make_row, usages, outcome):
    for option, u in zip(("t128_s128", "s128_s128"), usages, strict=True):
        make_row(tmp_path, option, option, 1.0, seeds=(0, 1), usage=u)
    make_row(tmp_path, "vq", "vq", 0.0, seeds=(0, 1), usage=10.0)  # not the claim's
    verdict = usage(section(tmp_path))
    assert verdict.outcome == outcome and len(verdict.evidence) == 2
    assert "≥ 95%" in verdict.rule and "< 80%" in verdict.rule


def test_a_collapsed_codebook_contradicts_the_usage_claim(tmp_path, make_row):
    """100% of the global codes used, but they are one vector: judged on distinct codes."""
    for option in ("t128_s128", "s128_s128"):
        make_row(tmp_path, option, option, 1.0, seeds=(0, 1), usage=(100.0, 99.0))
    paths = [tmp_path / f"t128_s128_s{seed}" / "eval.json" for seed in (0, 1)]
    for path in paths:
        result = json.loads(path.read_text())
        for name, distinct in (("global", 1), ("local", 507)):
            extra = {"distinct": distinct, "distinct_usage": distinct / 5.12}
            result["codebooks"][name] |= extra
            result["test"]["codebooks"][name] |= extra
        path.write_text(json.dumps(result))
    verdict = usage(section(tmp_path))
    assert verdict.outcome == CONTRADICTED and "distinct" in verdict.rule
    evidence = next(e for e in verdict.evidence if "T-128" in e)
    assert "global 0.2% ± 0.0 distinct, local 99.0% ± 0.0 distinct" in evidence
    # a collapsed run is marked (the trainer's rule: distinct < used / 2)
    (t128,) = [c for c in section(tmp_path)[0] if c.representative.quantizer == "t128_s128"]
    assert [r.collapsed for r in t128.finished] == [["global"], ["global"]]
    # without distinct counts (eval.json of an older run) the same usage supports it
    for path in paths:
        result = json.loads(path.read_text())
        for part in (result, result["test"]):
            for name in ("global", "local"):
                del part["codebooks"][name]["distinct_usage"]
        path.write_text(json.dumps(result))
    assert usage(section(tmp_path)).outcome == SUPPORTED


def test_a_gap_retraining_can_undo_is_inconclusive(tmp_path, make_run, fakes):
    """Three seeds of T-128/S-128 land at +0.9, -0.8 and +1.0 dB over three steady seeds
    of S-128/S-128: averaged over seeds, every image gains ~0.37 dB (the image and the
    photo intervals say better), but the seeds' own spread says a retraining could
    reverse it."""
    base, base_test = fakes.base_values(), fakes.base_values(4321)

    def build(root, shifts):
        for seed, (plain, transformer) in enumerate(shifts):
            for option, db in (("s128_s128", plain), ("t128_s128", transformer)):
                noise = 10 * seed + len(option)
                make_run(
                    root, f"{option}_{seed}", option, seed=seed,
                    values=fakes.shifted(base, db, 0.05, seed=noise),
                    test=fakes.shifted(base_test, db, 0.05, seed=noise + 1),
                    test_names=fakes.TEST_NAMES,
                )  # fmt: skip
                make_run(
                    root, f"{option}_2x", option, seed=0, max_steps=200,
                    values=fakes.shifted(base, db, 0.05, seed=noise + 2),
                    test=fakes.shifted(base_test, 1.0 if option[0] == "t" else 0.0, 0.05,
                                       seed=noise + 3),
                    test_names=fakes.TEST_NAMES,
                ) if seed == 0 else None  # fmt: skip

    build(tmp_path, [(0.0, 0.9), (0.02, -0.8), (-0.02, 1.0)])
    verdict = transformer_beats_plain(section(tmp_path))
    assert verdict.outcome == INCONCLUSIVE and verdict.budget == "kept"
    psnr = next(p for p in verdict.evidence[0].split("; ") if p.startswith("ΔPSNR"))
    assert "photos [+0.3" in psnr and "seeds [-2.1" in psnr and ": inconclusive" in psnr

    # the same rows with the seeds in agreement: both intervals say better
    steady = tmp_path / "steady"
    build(steady, [(0.0, 0.35), (0.0, 0.4), (0.0, 0.38)])
    assert transformer_beats_plain(section(steady)).outcome == SUPPORTED
