"""Preemption with data-loader workers (the default): Slurm signals every process of the
job step, workers included. A signal mid-step, during an evaluation or during a
checkpoint write ends in a checkpoint, exit 128 + signal (no requeue handler here) and a
resumed run bit-identical to one never stopped."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from processes import group_alive

from dcvq.checkpoint import read_checkpoint
from dcvq.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
WORKERS = "trainer.num_workers=2"  # persistent train workers, as by default
COMPARED = ("step", "model", "discriminator", "opt_ae", "opt_d", "rng")


def tensors(tree, prefix: str = ""):
    """(path, tensor) for every tensor of a nested state dict."""
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from tensors(v, f"{prefix}.{k}")
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from tensors(v, f"{prefix}.{i}")


def assert_same_state(a: Path, b: Path) -> None:
    sa, sb = read_checkpoint(a), read_checkpoint(b)
    assert sa["step"] == sb["step"]
    ta = dict(tensors({k: sa[k] for k in COMPARED[1:]}))
    tb = dict(tensors({k: sb[k] for k in COMPARED[1:]}))
    assert ta.keys() == tb.keys() and len(ta) > 100
    for k, v in ta.items():
        assert torch.equal(v, tb[k]), k


def no_temp_files(run_dir: Path) -> bool:
    return not list((run_dir / "checkpoints").glob(".*.tmp"))


# ---- a real process, the whole process group signalled ---------------------------------


def start_train(run_dir: Path, overrides: list[str]) -> subprocess.Popen:
    """``python train.py`` in its own process group (its workers are in it too)."""
    return subprocess.Popen(
        [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    try:
        return proc.communicate(timeout=timeout)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups, /proc")
def test_signal_to_the_process_group_mid_training(tiny_overrides, tmp_path):
    """USR2 (Slurm's --signal / scancel --signal) and SIGTERM (preemption) reach the main
    process and its two workers at once, in the middle of training (a step, or the
    evaluation every 3 steps)."""
    max_steps = 8
    overrides = [
        *tiny_overrides,
        WORKERS, f"trainer.max_steps={max_steps}", "trainer.eval_every=3",
        "trainer.ckpt_every=100",
    ]  # fmt: skip
    straight = start_train(tmp_path / "straight", overrides)
    out = finish(straight)
    assert straight.returncode == 0, out[-3000:]

    for sig in (signal.SIGUSR2, signal.SIGTERM):
        run_dir = tmp_path / sig.name
        proc = start_train(run_dir, overrides)
        try:
            log = run_dir / "train.jsonl"
            deadline = time.monotonic() + 120
            while not (log.exists() and len(log.read_text().splitlines()) >= 2):
                assert proc.poll() is None, finish(proc)[-3000:]
                assert time.monotonic() < deadline, "no training step after 120 s"
                time.sleep(0.02)
            os.killpg(proc.pid, sig)
        finally:
            out = finish(proc)
        assert proc.returncode == 128 + sig, out[-3000:]
        assert "exited unexpectedly" not in out and "killed by signal" not in out
        stopped = read_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
        assert 2 <= stopped < max_steps
        assert f"checkpoint written at step {stopped} after a signal" in out
        assert no_temp_files(run_dir)
        deadline = time.monotonic() + 20  # workers end with the main process
        while group_alive(proc.pid):
            assert time.monotonic() < deadline, f"left behind: {group_alive(proc.pid)}"
            time.sleep(0.1)

        if sig == signal.SIGTERM:
            continue  # resuming is the same from here on
        resumed = start_train(run_dir, overrides)  # what the requeued job runs
        out = finish(resumed)
        assert resumed.returncode == 0, out[-3000:]
        assert f"resumed from {run_dir / 'checkpoints' / 'last.pt'} at step {stopped}" in out
        last = "checkpoints/last.pt"
        assert_same_state(tmp_path / "straight" / last, run_dir / last)


# ---- in this process, at points found by patching the test's own trainer ----------------


def signal_everyone(sig: signal.Signals) -> None:
    """Signals this process and all its children (the loader workers) from another
    process, as Slurm does: a worker ends on its own parent's SIGTERM (PyTorch's rule)."""
    workers = [p.pid for p in multiprocessing.active_children()]
    assert len(workers) >= 2, "the loader workers should be running"
    # rather than let the default action end pytest itself
    assert callable(signal.getsignal(sig)), f"no {sig.name} handler installed here"
    pids = [*map(str, workers), str(os.getpid())]
    subprocess.run(["kill", "-s", sig.name.removeprefix("SIG"), *pids], check=True)


OVERRIDES = [
    WORKERS,
    "trainer.max_steps=4",
    "trainer.eval_every=2",
    "trainer.ckpt_every=100",
    "trainer.eval_batch_size=2",  # 4 batches of the 8 evaluation images
]


_STRAIGHT: dict[str, Path] = {}


@pytest.fixture
def straight(tiny_cfg, tmp_path_factory) -> Path:
    """An uninterrupted run's directory (one for the tests of this module)."""
    if "dir" not in _STRAIGHT:
        run_dir = tmp_path_factory.mktemp("straight")
        Trainer(tiny_cfg(*OVERRIDES), run_dir).fit()
        _STRAIGHT["dir"] = run_dir
    return _STRAIGHT["dir"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill(1), fork")
@pytest.mark.parametrize("when", ["periodic", "final"])
def test_signal_during_an_evaluation(tiny_cfg, tmp_path, straight, monkeypatch, caplog, when):
    """The evaluation loader has workers too. A signal stops the evaluation before its
    next batch; nothing partial is recorded, the checkpoint is written, the run exits."""
    step = 2 if when == "periodic" else 4
    run_dir = tmp_path / "run"
    trainer = Trainer(tiny_cfg(*OVERRIDES), run_dir)
    original, fired = trainer.model.forward, []

    def forward(x):
        out = original(x)
        if not trainer.model.training and trainer.step == step and not fired:
            fired.append(step)  # in the first evaluation batch: its workers are running
            signal_everyone(signal.SIGUSR2)
        return out

    monkeypatch.setattr(trainer.model, "forward", forward)
    with pytest.raises(SystemExit) as info, caplog.at_level("WARNING"):
        trainer.fit()
    assert info.value.code == 128 + signal.SIGUSR2 and fired == [step]
    assert f"evaluation at step {step} stopped, not recorded" in caplog.text
    assert read_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == step
    assert no_temp_files(run_dir)
    recorded = (run_dir / "metrics.jsonl").read_text() if when == "final" else ""
    assert f'"step": {step}' not in recorded and not (run_dir / "eval.json").exists()

    Trainer(tiny_cfg(*OVERRIDES), run_dir).fit()  # the requeued job
    assert_same_state(straight / "checkpoints/last.pt", run_dir / "checkpoints/last.pt")
    # the interrupted final evaluation is done by the resumed run, with the same result
    assert (run_dir / "eval.json").read_text() == (straight / "eval.json").read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill(1), fork")
def test_signal_during_a_checkpoint_write(tiny_cfg, tmp_path, straight, monkeypatch):
    """The write completes (it is atomic anyway) and is not repeated for the signal."""
    run_dir = tmp_path / "run"
    trainer = Trainer(tiny_cfg(*OVERRIDES, "trainer.ckpt_every=2"), run_dir)
    real_save, writes = torch.save, []

    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        writes.append(obj["step"])
        if obj["step"] == 2:  # written to the temp file, not yet renamed
            signal_everyone(signal.SIGTERM)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(SystemExit) as info:
        trainer.fit()
    monkeypatch.undo()
    assert info.value.code == 128 + signal.SIGTERM
    assert writes == [2]
    assert read_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 2
    assert no_temp_files(run_dir)

    Trainer(tiny_cfg(*OVERRIDES), run_dir).fit()
    assert_same_state(straight / "checkpoints/last.pt", run_dir / "checkpoints/last.pt")
