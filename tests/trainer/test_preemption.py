"""A preemption/timeout signal checkpoints at a step boundary; the rerun continues exactly."""

import os
import signal

import pytest
import torch

from dcvq.trainer import Trainer
from dcvq.trainer.checkpoint import read_checkpoint

OVERRIDES = ["trainer.max_steps=5", "trainer.eval_every=100", "trainer.ckpt_every=100"]


def signal_at(trainer: Trainer, step: int, signum: int, monkeypatch) -> None:
    original = trainer.train_step

    def step_then_signal(micro):
        logs = original(micro)
        if trainer.step == step:
            os.kill(os.getpid(), signum)  # delivered to this (main) thread right away
        return logs

    monkeypatch.setattr(trainer, "train_step", step_then_signal)


def test_usr2_checkpoints_and_exits_then_resume_is_exact(tiny_cfg, tmp_path, monkeypatch):
    straight = Trainer(tiny_cfg(*OVERRIDES), tmp_path / "a")
    straight.fit()

    interrupted = Trainer(tiny_cfg(*OVERRIDES), tmp_path / "b")
    signal_at(interrupted, 2, signal.SIGUSR2, monkeypatch)
    with pytest.raises(SystemExit) as info:
        interrupted.fit()
    assert info.value.code == 128 + signal.SIGUSR2
    assert read_checkpoint(tmp_path / "b/checkpoints/last.pt")["step"] == 2
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL  # handlers restored

    resumed = Trainer(tiny_cfg(*OVERRIDES), tmp_path / "b")  # what the requeued job runs
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
