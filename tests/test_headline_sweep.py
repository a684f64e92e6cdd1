"""The design card's headline: `python train.py -m 'quantizer=glob(*)' codebook.size=512,1024`
(tiny model, CPU): 10 jobs, 10 results, 10 wandb runs in one group, one report."""

import json
import subprocess
import sys

import pytest

from dcvq.config import CONF_DIR

TABLE2 = {"vq", "s128_s128", "t192_s64", "t64_s192", "t128_s128"}


@pytest.mark.slow
def test_headline_sweep_with_wandb_and_report(
    wandb_records, offline_wandb, tiny_overrides, tmp_path
):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            str(CONF_DIR.parent / "train.py"),
            "-m",
            "quantizer=glob(*)",
            "codebook.size=512,1024",
            *tiny_overrides,
            "trainer.max_steps=1",
            "eval.max_images=4",
            "logger=wandb",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir())
    # one job per option and size: the paper's five options, and any a user has added
    options = {p.stem for p in (CONF_DIR / "quantizer").glob("*.yaml")}
    assert TABLE2.issubset(options)
    assert len(jobs) == 2 * len(options)  # 10 on a clean checkout
    results = [json.loads((j / "eval.json").read_text()) for j in jobs]
    assert all(r["n_images"] == 4 for r in results)

    # the sweep's process has exited: every run log is complete
    runs = [wandb_records.read_run(p) for p in wandb_records.find_runs(sweep)]
    assert len(runs) == len(jobs) and len({r.run_id for r in runs}) == len(jobs)
    assert {r.group for r in runs} == {str(sweep)}
    # a job type per configuration (its seeds would share it), a name per run
    configs = {f"{q}-n{n}" for q in options for n in (512, 1024)}
    assert {r.job_type for r in runs} == configs
    assert {r.name for r in runs} == {f"{c}-samples-s0" for c in configs}
    for run in runs:
        steps = [row for row in run.history if "val/psnr" in row]
        assert steps and steps[-1]["_step"] == 1
        assert any(k.startswith("usage/") for row in run.history for k in row)

    report = subprocess.run(
        [sys.executable, "-m", "dcvq.report", str(sweep)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-2000:]
    text = (sweep / "report.md").read_text()
    for row in ("VQ-GAN", "T-128", "S-128", "T-192", "S-64", "T-64", "S-192"):
        assert row in text
    assert len((sweep / "report.csv").read_text().strip().splitlines()) == len(jobs) + 1
