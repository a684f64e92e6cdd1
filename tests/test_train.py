"""train.py, the entry point, as a user runs it."""

import json
import os
import subprocess
import sys

import pytest

from dcvq.config import CONF_DIR


def test_a_run_ends_by_saying_what_it_gave_and_where(tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(CONF_DIR.parent / "train.py"), *tiny_overrides,
         f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run_dir / "eval.json").read_text())
    last = proc.stdout.strip().splitlines()[-5:]
    assert f"PSNR {results['psnr']:.2f} dB" in last[0] and "at step 4" in last[0]
    usage = results["codebooks"]
    assert last[1] == "codebook usage: " + ", ".join(
        f"{k} {usage[k]['usage']:.1f} % ({usage[k]['distinct']} distinct of {usage[k]['size']})"
        for k in ("global", "local")
    )
    assert last[2] == f"run directory: {run_dir}"
    assert last[4].endswith(str(run_dir / "samples" / "step_0000004.png"))


def test_prior_after_training_fills_eval_json_and_wandb(
    tiny_overrides, tmp_path, offline_wandb, wandb_records
):
    """`train.py ... prior=tiny`: the prior stage runs on the trained tokenizer, eval.json
    gains its section, wandb its prior/ columns; a re-launch trains neither again."""
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable, str(CONF_DIR.parent / "train.py"), *tiny_overrides, "logger=wandb",
        "prior=tiny", "prior.max_steps=3", "prior.grid_images=2", "prior.max_train_images=16",
        "prior.max_eval_images=8", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run_dir / "eval.json").read_text())
    prior = results["prior"]
    written = json.loads((run_dir / "prior" / "prior.json").read_text())
    for key in ("bits_per_token", "bits_per_token_global", "bits_per_token_local", "steps",
                "n_params", "fid"):  # fmt: skip
        assert prior[key] == written[key], key
    assert prior["steps"] == 3 and prior["fid"] is None  # eval.fid=false in training
    assert prior["bits_per_token"] == pytest.approx(
        prior["bits_per_token_global"] + prior["bits_per_token_local"]
    )
    assert (run_dir / "prior" / "samples.png").is_file()
    assert f"token prior: {prior['bits_per_token']:.3f} bits per token" in proc.stdout
    logged = {}
    for path in wandb_records.find_runs(run_dir):
        run = wandb_records.read_finished(path)
        logged |= {k: v for k in ("prior/bits_per_token",) for _, v in run.series(k)}
    assert logged == {"prior/bits_per_token": pytest.approx(prior["bits_per_token"])}

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert "nothing to train" in log and "has this prior's results already" in log
    assert json.loads((run_dir / "eval.json").read_text()) == results


def test_a_bad_device_is_named_by_its_config_key(tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(CONF_DIR.parent / "train.py"), *tiny_overrides,
         "trainer.device=gpu0", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "trainer.device='gpu0': use auto, cpu, cuda" in proc.stderr
    assert not (run_dir / "checkpoints").exists()


def run_train(args: list[str], tmp_path, full_error: bool = False):
    """train.py as a user runs it: without the tests' HYDRA_FULL_ERROR=1, unless asked."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env |= {"OMP_NUM_THREADS": "1"} | ({"HYDRA_FULL_ERROR": "1"} if full_error else {})
    return subprocess.run(
        [sys.executable, str(CONF_DIR.parent / "train.py"), *args],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "quantizer.global_dim=64",
            "  - quantizer.global_dim + quantizer.local_dim = 64 + 128 = 192 must equal "
            "model.embed_dim=256",
        ),
        (
            "+quantizer.bogus=1",
            "  - quantizer.bogus: dcvq.quantizers.DualCodebookQuantizer has no argument 'bogus'",
        ),
    ],
)
def test_a_config_error_is_its_message_alone_and_leaves_no_run_dir(
    tiny_overrides, tmp_path, override, message
):
    run_dir = tmp_path / "outputs" / "run"
    proc = run_train([*tiny_overrides, override, f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: invalid configuration:\n" + message), proc.stderr
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 2  # the heading and the one bad key
    assert not run_dir.exists() and list((tmp_path / "outputs").iterdir()) == []


def test_hydra_full_error_shows_the_traceback(tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    args = [*tiny_overrides, "quantizer.global_dim=64", f"hydra.run.dir={run_dir}"]
    proc = run_train(args, tmp_path, full_error=True)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "dcvq.errors.ConfigError: invalid" in proc.stderr
    assert not run_dir.exists()


def test_a_corrupt_checkpoint_to_resume_is_named_and_the_run_dir_kept(tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    ckpt = run_dir / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_text("not a checkpoint\n")
    proc = run_train([*tiny_overrides, f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"error: checkpoint {ckpt} is not a PyTorch file: its 17 bytes are not the zip "
        "archive torch.save writes (another format, or a copy cut short)"
    ]
    assert ckpt.read_text() == "not a checkpoint\n"  # never removed: not Hydra's
