"""summary.csv (mean and 95% interval over seeds per configuration), paired.csv and
report.md's paired comparisons, and ``--reference``: on fake runs with per-image files."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

from dcvq import report as rp

T_975_2 = 4.302652729911275  # Student's t, 97.5th percentile, 2 degrees of freedom


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, make_run, fakes):
    """vq (2 seeds), T-128/S-128 (3 seeds, +1 dB), S-128/S-128 on 35 of the 40 images,
    T-64/S-192 on other images, T-192/S-64 on another split; and its report."""
    base = fakes.base_values()
    root = tmp_path_factory.mktemp("seeds") / "sweep"
    values = {}
    for seed in (0, 1):
        values["vq", seed] = fakes.shifted(base, 0.0, 0.1, seed=10 + seed)
        make_run(root, f"vq_{seed}", "vq", seed=seed, values=values["vq", seed])
    for seed in (0, 1, 2):
        values["t128", seed] = fakes.shifted(base, 1.0, 0.1, seed=20 + seed)
        make_run(root, f"t128_{seed}", "t128_s128", seed=seed, values=values["t128", seed])
    half = fakes.shifted(base, 0.5, 0.1, seed=30)
    make_run(
        root, "s128", "s128_s128", values={m: v[5:] for m, v in half.items()}, names=fakes.NAMES[5:]
    )
    make_run(root, "t64", "t64_s192", names=[f"other{i}" for i in range(fakes.N_IMAGES)])
    job = make_run(root, "t192", "t192_s64")
    res = json.loads((job / "eval.json").read_text())
    (job / "eval.json").write_text(json.dumps(res | {"split": "test"}))
    return root, values, rp.report(root, draw=False)


def test_summary_has_mean_and_t_interval_over_seeds(sweep):
    _, values, rep = sweep
    summary = {r["quantizer"]: r for r in rows(rep.summary)}
    t128 = summary["t128_s128"]
    assert (t128["n_seeds"], t128["seeds"], t128["n_missing"]) == ("3", "0 1 2", "0")
    assert t128["label"] == "Dual Codebook T-128/S-128" and t128["table"] == "2"
    seed_psnr = [values["t128", s]["psnr"].mean() for s in (0, 1, 2)]
    assert float(t128["psnr_mean"]) == pytest.approx(np.mean(seed_psnr))
    half = T_975_2 * np.std(seed_psnr, ddof=1) / math.sqrt(3)
    assert float(t128["psnr_ci95"]) == pytest.approx(half)
    assert float(t128["usage_global_mean"]) == pytest.approx(100 * 507 / 512)
    assert t128["usage_global_ci95"] == "0.0" and t128["usage_codebook_mean"] == ""
    assert summary["vq"]["usage_codebook_mean"] != "" and summary["vq"]["n_seeds"] == "2"
    # one seed: a mean, no interval
    assert summary["s128_s128"]["psnr_ci95"] == "" and summary["s128_s128"]["n_seeds"] == "1"
    header = rows(rep.summary)[0].keys()
    assert "fid_mean" not in header and "lpips_mean" not in header  # not measured
    assert {"l1_ci95", "l2_ci95", "ssim_ci95", "psnr_gain_last_fifth_mean"} <= set(header)

    md = rep.markdown.read_text()
    line = next(ln for ln in md.splitlines() if "| T-128 | S-128 | 512 |" in ln)
    assert f"| {np.mean(seed_psnr):.2f} ± {half:.2f} |" in line and "| 3 (0, 1, 2) |" in line
    assert "`t128_0`, `t128_1`, `t128_2`" in line
    assert md.rstrip().splitlines()[0].startswith("# Results")
    assert md.index("## Verdicts") > md.index("## Missing runs")
    assert "several devices" not in md  # one device (the config does not say: auto)
    assert {r["device"] for r in rows(rep.csv)} == {"auto"}


def test_runs_on_several_devices_are_not_pooled_without_the_flag(tmp_path, make_run):
    """One row per device type and torch version; --pool-devices pools them, and says so
    under the table; a comparison across devices is flagged."""
    for seed, (device, torch) in enumerate((("cuda", "2.11"), ("cpu", "2.14"), ("cpu", "2.14"))):
        make_run(tmp_path, f"vq_{seed}", "vq", seed=seed, device=device, torch=torch)
    make_run(tmp_path, "t128", "t128_s128", device="cpu", torch="2.14")
    # a CPU re-launch leaves the finished GPU run alone but rewrites its .hydra config:
    # the device it trained on is eval.json's
    hydra_cfg = tmp_path / "vq_0" / ".hydra" / "config.yaml"
    hydra_cfg.write_text(hydra_cfg.read_text().replace("device: cuda", "device: cpu"))
    rep = rp.report(tmp_path, draw=False)
    assert [(r["run"], r["device"], r["device_type"], r["torch"]) for r in rows(rep.csv)] == [
        ("t128", "cpu", "cpu", "2.14"),
        ("vq_0", "cuda", "cuda", "2.11"),
        ("vq_1", "cpu", "cpu", "2.14"),
        ("vq_2", "cpu", "cpu", "2.14"),
    ]
    summary = {r["label"]: r for r in rows(rep.summary)}
    assert summary["VQ-GAN [cpu, torch 2.14]"]["seeds"] == "1 2"
    assert summary["VQ-GAN [cuda, torch 2.11]"]["seeds"] == "0"
    assert {r["pooled"] for r in summary.values()} == {""}
    md = rep.markdown.read_text()
    assert "Rows are split by device type and torch version (`--pool-devices`" in md
    # the dual row (CPU) is compared with the VQ-GAN row of its own device
    (t128,) = [r for r in rows(rep.paired) if r["metric"] == "psnr"]
    assert t128["reference"] == "VQ-GAN [cpu, torch 2.14]" and t128["device_flag"] == ""

    assert rp.main([str(tmp_path), "--pool-devices"]) == 0
    summary = {r["label"]: r for r in rows(tmp_path / "summary.csv")}
    assert summary["VQ-GAN"]["seeds"] == "0 1 2" and summary["VQ-GAN"]["pooled"] == "yes"
    assert summary["VQ-GAN"]["device"] == "cpu cuda"
    md = (tmp_path / "report.md").read_text()
    assert "| 3 (0, 1, 2) |" in md and "pooled: cpu · torch 2.14; cuda · torch 2.11" in md
    assert "**Pooled across devices** (`--pool-devices`): VQ-GAN count runs" in md
    (t128,) = [r for r in rows(tmp_path / "paired.csv") if r["metric"] == "psnr"]
    assert (
        t128["device_flag"]
        == "cpu · torch 2.14 against pooled: cpu · torch 2.14; cuda · torch 2.11"
    )
    assert "**trained on different devices** from its reference" in md


def test_paired_comparison_with_vq_on_the_same_images(sweep):
    _, values, rep = sweep
    paired = rows(rep.paired)
    t128 = {r["metric"]: r for r in paired if r["row_quantizer"] == "t128_s128"}
    assert set(t128) == {"psnr", "l1", "l2", "ssim"}
    psnr = t128["psnr"]
    assert psnr["reference"] == "VQ-GAN" and psnr["reference_quantizer"] == "vq"
    assert (psnr["n_images"], psnr["n_seeds"], psnr["n_seeds_reference"]) == ("40", "3", "2")
    # per image: the mean over each row's seeds, then the paired t-interval over images
    mine = np.mean([values["t128", s]["psnr"] for s in (0, 1, 2)], axis=0)
    ref = np.mean([values["vq", s]["psnr"] for s in (0, 1)], axis=0)
    low, high = st.ttest_rel(mine, ref).confidence_interval(0.95)
    assert float(psnr["mean_diff"]) == pytest.approx(np.mean(mine - ref))
    assert float(psnr["mean_diff"]) == pytest.approx(1.0, abs=0.1)
    assert (float(psnr["ci95_low"]), float(psnr["ci95_high"])) == (
        pytest.approx(low),
        pytest.approx(high),
    )
    assert (psnr["better"], psnr["outcome"]) == ("higher", "better")
    assert (t128["l1"]["better"], t128["l1"]["outcome"]) == ("lower", "better")
    assert float(t128["l1"]["mean_diff"]) < 0

    # different image sets: the intersection, and it says so; none in common: refused
    s128 = [r for r in paired if r["row_quantizer"] == "s128_s128"]
    assert {r["n_images"] for r in s128} == {"35"} and "image sets differ" in s128[0]["note"]
    (t64,) = [r for r in paired if r["row_quantizer"] == "t64_s192"]
    assert t64["metric"] == "" and "no held-out image in common" in t64["note"]
    (t192,) = [r for r in paired if r["row_quantizer"] == "t192_s64"]
    assert "split `test`" in t192["note"]
    assert not [r for r in paired if r["row_quantizer"] == "vq"]  # not with itself

    md = rep.markdown.read_text()
    assert "### Paired comparison with VQ-GAN (same held-out images per pair, 35 to 40)" in md
    assert "ΔPSNR (higher is better)" in md and "ΔL1 (lower is better)" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| Dual Codebook T-128/S-128 |"))
    assert line.startswith("| Dual Codebook T-128/S-128 | VQ-GAN | 3 vs 2 | 40 (40) | +1.0")
    # photos and seeds both exclude 0: better (never bold: a comparison, not a verdict)
    assert "· photos [+0.9" in line and ": better |" in line and "**" not in line
    assert "compared on the 35 both evaluated" in md


def test_reference_option(sweep, tmp_path, capsys):
    root = tmp_path / "sweep"
    shutil.copytree(sweep[0], root)
    assert rp.main([str(root), "--reference", "s128_s128"]) == 0
    paired = rows(root / "paired.csv")
    assert {r["reference"] for r in paired} == {"Dual Codebook S-128/S-128"}
    assert "vq" in {r["row_quantizer"] for r in paired}
    md = (root / "report.md").read_text()
    assert "### Paired comparison with Dual Codebook S-128/S-128" in md
    assert rp.main([str(root), "--reference", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--reference 'nope'" in err and "VQ-GAN" in err
    # a row label in any case, the dual halves, the option: the same row
    configs = sweep[2].sections[0].configs
    t128 = next(c for c in configs if c.representative.quantizer == "t128_s128")
    for name in ("vq-gan", "VQ-GAN, 512 codes", "vq"):
        assert rp.find_reference(t128, configs, name).label == "VQ-GAN"
    assert rp.find_reference(t128, configs, "S-128/S-128").label.endswith("S-128/S-128")
    assert rp.find_reference(t128, configs, "t128_s128") is None  # not with itself


def test_reference_at_the_same_codebook_size(tmp_path, make_run):
    for option in ("vq", "t128_s128"):
        for size in (512, 1024):
            make_run(tmp_path, f"{option}_{size}", option, size=size)
    rep = rp.report(tmp_path, draw=False)
    pairs = {(r["row"], r["reference"]) for r in rows(rep.paired)}
    assert pairs == {
        ("Dual Codebook T-128/S-128, 512 codes", "VQ-GAN, 512 codes"),
        ("Dual Codebook T-128/S-128, 1024 codes", "VQ-GAN, 1024 codes"),
    }
    md = rep.markdown.read_text()
    assert "Paired comparison with VQ-GAN at the same codebook size (same 40 held-out" in md


def test_out_writes_the_report_elsewhere(sweep, tmp_path):
    """--out: a folder to commit (experiments/<study>/) without the runs' checkpoints; the
    sweep dir is left as it was."""
    root, out = tmp_path / "sweep", tmp_path / "results"
    shutil.copytree(sweep[0], root)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert rp.main([str(root), "--out", str(out)]) == 0
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    written = {p.name for p in out.iterdir()}
    assert {"report.md", "report.csv", "summary.csv", "paired.csv", "figures"} <= written
    md = (out / "report.md").read_text()
    for link in re.findall(r"\]\((figures/[^)]+)\)", md):
        assert (out / link).is_file(), link
    assert "Paper numbers from: `experiments/table1/paper.csv`" in md  # not a local path


def test_token_prior_columns(sweep, tmp_path):
    """Runs trained with prior=...: eval.json's prior section becomes summary.csv's
    prior_* columns (mean and interval over seeds) and report.md's Prior bits/token."""
    root = tmp_path / "sweep"
    shutil.copytree(sweep[0], root)
    bits = {"t128_0": 9.0, "t128_1": 9.5, "t128_2": 10.0}
    for job, b in bits.items():
        path = root / job / "eval.json"
        res = json.loads(path.read_text())
        section = {"bits_per_token": b, "bits_per_token_global": b - 4, "bits_per_token_local": 4.0}
        path.write_text(json.dumps(res | {"prior": section | {"steps": 3, "fid": None}}))
    rep = rp.report(root, draw=False)
    summary = {r["quantizer"]: r for r in rows(rep.summary)}
    t128 = summary["t128_s128"]
    assert float(t128["prior_bits_per_token_mean"]) == pytest.approx(9.5)
    assert float(t128["prior_bits_per_token_ci95"]) == pytest.approx(T_975_2 * 0.5 / math.sqrt(3))
    assert float(t128["prior_bits_per_token_local_mean"]) == 4.0
    assert summary["vq"]["prior_bits_per_token_mean"] == ""  # trained without a prior
    assert "prior_fid_mean" not in t128  # null everywhere: no column
    md = rep.markdown.read_text()
    line = next(ln for ln in md.splitlines() if "| Dual Codebook | T-128 | S-128 |" in ln)
    assert "| 9.500 ± 1.242 |" in line and "Prior bits/token" in md
