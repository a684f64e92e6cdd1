"""The training loop's wiring of the stop protocol (dcvq.runtime.stop, tested there): a
preemption/timeout signal checkpoints at a step boundary; the rerun continues exactly."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from dcvq.checkpoint import read_checkpoint
from dcvq.trainer import Trainer

OVERRIDES = ["trainer.max_steps=5", "trainer.eval_every=100", "trainer.ckpt_every=100"]


def signal_at(trainer: Trainer, step: int, signum: int, monkeypatch) -> None:
    original = trainer.train_step

    def step_then_signal(micro):
        logs = original(micro)
        if trainer.step == step:
            os.kill(os.getpid(), signum)  # delivered to this (main) thread right away
        return logs

    monkeypatch.setattr(trainer, "train_step", step_then_signal)


@pytest.mark.parametrize(
    "schedule", [[], ["trainer.lr_schedule=cosine", "trainer.warmup_steps=2"]], ids=["", "cosine"]
)
def test_usr2_checkpoints_and_exits_then_resume_is_exact(tiny_cfg, tmp_path, monkeypatch, schedule):
    overrides = [*OVERRIDES, *schedule]
    straight = Trainer(tiny_cfg(*overrides), tmp_path / "a")
    straight.fit()

    interrupted = Trainer(tiny_cfg(*overrides), tmp_path / "b")
    signal_at(interrupted, 2, signal.SIGUSR2, monkeypatch)
    with pytest.raises(SystemExit) as info:
        interrupted.fit()
    assert info.value.code == 128 + signal.SIGUSR2
    assert read_checkpoint(tmp_path / "b/checkpoints/last.pt")["step"] == 2
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL  # handlers restored

    resumed = Trainer(tiny_cfg(*overrides), tmp_path / "b")  # what the requeued job runs
    resumed.fit()
    for (k, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k


def test_previous_python_handler_is_handed_the_signal(tiny_cfg, tmp_path, monkeypatch):
    """Under submitit, its own handler (requeue) runs after our checkpoint."""
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        trainer = Trainer(tiny_cfg(*OVERRIDES), tmp_path)
        signal_at(trainer, 3, signal.SIGTERM, monkeypatch)
        trainer.fit()  # the previous handler ignores SIGTERM: training goes on
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [signal.SIGTERM] and trainer.step == 5
    assert read_checkpoint(tmp_path / "checkpoints/last.pt")["step"] == 5


# ---- under DDP: the ranks agree at the step boundary -----------------------------------


RANK_SIGNAL_SCRIPT = """
import json, os, signal, sys
import torch
from dcvq.config import compose
from dcvq.trainer import Trainer

torch.set_num_threads(1)
rank = int(os.environ["RANK"])
trainer = Trainer(compose(sys.argv[2:]), sys.argv[1])
original = trainer.train_step

def train_step(micro):
    logs = original(micro)
    if rank == 1 and trainer.step == 2:  # the signal reaches rank 1 only
        os.kill(os.getpid(), signal.SIGUSR2)
    return logs

trainer.train_step = train_step
try:
    trainer.fit()
    outcome = "finished"
except SystemExit as e:
    outcome = f"exit {e.code}"
except Exception as e:
    outcome = f"{type(e).__name__}: {e}"
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
    json.dump(outcome, f)
"""


@pytest.mark.slow
def test_a_rank_told_by_the_others_hands_on_the_same_signal(tiny_overrides, tmp_path):
    """torchrun, 2 CPU ranks; USR2 reaches rank 1 alone: both checkpoint at the same step
    and exit 128 + USR2 (rank 0 computed 128 + None before)."""
    script = tmp_path / "signal_rank1.py"
    script.write_text(RANK_SIGNAL_SCRIPT)
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            str(script), str(run_dir), "quantizer=t128_s128", *tiny_overrides,
            "trainer.max_steps=4", "trainer.eval_every=100", "trainer.ckpt_every=100",
            "trainer.dist_timeout_min=1",
        ],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcomes = [json.loads((run_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert outcomes == [f"exit {128 + signal.SIGUSR2}"] * 2, outcomes
    assert read_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 2
