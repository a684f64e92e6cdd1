"""Re-launching a sweep into its own directory trains only what is unfinished: a run whose
eval.json belongs to its current config is left alone, a killed run resumes from its
checkpoint, a missing one runs. A study can span several sittings."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dcvq.trainer import train

ROOT = Path(__file__).resolve().parents[2]


def snapshot(run_dir: Path) -> dict[str, int]:
    """Every file of a run dir but the logs Hydra itself appends to, with its mtime."""
    return {
        str(p.relative_to(run_dir)): p.stat().st_mtime_ns
        for p in run_dir.rglob("*")
        if p.is_file() and ".hydra" not in p.parts and p.suffix != ".log"
    }


def test_a_finished_run_is_not_trained_again(tiny_cfg, tmp_path):
    first = train(tiny_cfg(), tmp_path)
    before = snapshot(tmp_path)
    assert {"eval.json", "per_image.csv", "checkpoints/last.pt"} <= before.keys()
    again = train(tiny_cfg("logger=none", "trainer.num_workers=0"), tmp_path)
    assert again["psnr"] == first["psnr"] and again["step"] == first["step"]
    assert snapshot(tmp_path) == before  # nothing rewritten


def test_a_run_finished_on_another_device_is_not_trained_again(tiny_cfg, tmp_path):
    """The same rule as the report's seeds: the device is neutral, the precision it ran
    in is not (a GPU run in fp32 is finished for the CPU; one in bf16 is not)."""
    cfg = tiny_cfg()
    assert (cfg.trainer.device, cfg.trainer.precision) == ("cpu", "auto")
    train(cfg, tmp_path)
    path = tmp_path / "eval.json"
    results = json.loads(path.read_text())
    results["config"]["trainer"] |= {"device": "cuda", "precision": "fp32"}
    path.write_text(json.dumps(results))
    before = snapshot(tmp_path)
    assert train(cfg, tmp_path)["config"]["trainer"]["device"] == "cuda"
    assert snapshot(tmp_path) == before

    results["config"]["trainer"]["precision"] = "auto"  # bf16 on the GPU
    path.write_text(json.dumps(results))
    assert train(cfg, tmp_path)["config"]["trainer"]["device"] == "cpu"


def test_a_changed_config_trains_on_from_the_checkpoint(tiny_cfg, tmp_path):
    train(tiny_cfg(), tmp_path)
    results = train(tiny_cfg("trainer.max_steps=6"), tmp_path)
    assert results["step"] == 6
    assert json.loads((tmp_path / "eval.json").read_text())["config"]["trainer"]["max_steps"] == 6
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "train.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4, 5, 6]  # resumed at 4, not restarted


def test_an_eval_json_without_its_config_is_not_taken_as_finished(tiny_cfg, tmp_path):
    train(tiny_cfg(), tmp_path)
    path = tmp_path / "eval.json"
    old = json.loads(path.read_text())
    del old["config"]
    path.write_text(json.dumps(old))
    train(tiny_cfg(), tmp_path)
    assert "config" in json.loads(path.read_text())


def test_per_image_csv_matches_eval_json(tiny_cfg, tmp_path):
    results = train(tiny_cfg(), tmp_path)
    with open(tmp_path / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == results["n_images"] == 8
    assert list(rows[0]) == ["split", "name", "psnr", "l1", "l2", "ssim"]
    assert {r["split"] for r in rows} == {"val"} and "test" not in results
    assert len({r["name"] for r in rows}) == len(rows)
    for key in ("psnr", "l1", "l2", "ssim"):
        mean = sum(float(r[key]) for r in rows) / len(rows)
        assert mean == pytest.approx(results[key], rel=1e-9)


@pytest.mark.slow
def test_relaunched_sweep_skips_finished_resumes_killed(tiny_overrides, tmp_path):
    """The real command twice: the first launch is killed (SIGKILL, as a crash or a
    lost node) while its second job trains; the second launch leaves the first job's
    files alone and resumes the second job from its checkpoint."""
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable, "train.py", "-m", *tiny_overrides, "quantizer=vq,s128_s128",
        "trainer.max_steps=100", "trainer.ckpt_every=5", "trainer.eval_every=1000",
        "trainer.log_every=5", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            # run dirs are named by configuration: the finished one is the first job
            jobs = sorted(
                (p for p in sweep.glob("*") if p.is_dir()),
                key=lambda p: not (p / "eval.json").is_file(),
            )
            if len(jobs) == 2 and (jobs[1] / "checkpoints" / "last.pt").is_file():
                break
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the second job did not checkpoint"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done, killed = jobs
    assert (done / "eval.json").is_file() and not (killed / "eval.json").exists()
    before = snapshot(done)

    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "nothing to train" in log and "resumed from" in log, log[-3000:]
    assert snapshot(done) == before  # the finished job: nothing rewritten
    results = json.loads((killed / "eval.json").read_text())
    assert results["step"] == 100
    steps = [json.loads(line)["step"] for line in (killed / "train.jsonl").read_text().splitlines()]
    assert steps.count(1) == 1, "restarted instead of resumed"
    assert steps[-1] == 100
    assert {p.name for p in sweep.glob("*") if p.is_dir()} == {done.name, killed.name}
