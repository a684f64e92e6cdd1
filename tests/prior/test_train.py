"""The prior's training loop on synthetic token grids: it learns, and resumes exactly."""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch

from dcvq.checkpoint import read_checkpoint
from dcvq.prior.config import build_prior
from dcvq.prior.likelihood import bits_per_token
from dcvq.prior.train import CHECKPOINT, PriorTrainer
from dcvq.runtime.distributed import DistEnv

CPU = torch.device("cpu")
NAMES, SIZES, GRID = ["global", "local"], [16, 16], [4, 4]


def tokens(checkpoint: str = "tok.pt", step: int = 1) -> dict:
    return {"checkpoint": checkpoint, "step": step, "codebook_names": NAMES,
            "codebook_sizes": SIZES, "grid": GRID}  # fmt: skip


def pattern(n: int, seed: int = 0) -> torch.Tensor:
    """A learnable pattern: global = (row + col + shift) % 16 with a random shift per
    image (4 bits, at the first position), local = global's code reversed."""
    g = torch.Generator().manual_seed(seed)
    shift = torch.randint(0, 16, (n, 1, 1), generator=g)
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    glob = (rows + cols + shift) % 16
    return torch.stack([glob, 15 - glob], 1).to(torch.int32)


def trainer(p, run_dir, tok=None) -> PriorTrainer:
    torch.manual_seed(p.seed)
    model = build_prior(p, SIZES, GRID, source="test")
    return PriorTrainer(model, p, run_dir, CPU, DistEnv(), tok or tokens())


def test_bits_per_token_fall_far_below_uniform_on_a_learnable_pattern(prior_cfg, tmp_path):
    p = prior_cfg("prior.max_steps=60", "prior.batch_size=16", "prior.ckpt_every=1000")
    t = trainer(p, tmp_path)
    held_out = pattern(32, seed=1)
    before = bits_per_token(t.model, held_out, NAMES, 16, CPU)
    t.fit(pattern(256))
    after = bits_per_token(t.model, held_out, NAMES, 16, CPU)
    uniform = 2 * math.log2(16)
    assert math.isclose(before["bits_per_token"], uniform, rel_tol=0.05)  # untrained: ~uniform
    # exact: 4 bits per image for the shift, over 16 positions = 0.25 bits per position
    assert after["bits_per_token"] < 0.25 * uniform, after
    assert math.isclose(after["bits_per_token"],
                        after["bits_per_token_global"] + after["bits_per_token_local"])  # fmt: skip
    assert after["bits_per_token_local"] < 0.5  # given its global token, the local is known


def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(prior_cfg, tmp_path):
    # dropout on: the RNG state must come back too
    common = ["prior.max_steps=6", "prior.ckpt_every=3", "prior.model.dropout=0.2",
              "prior.warmup_steps=4"]  # fmt: skip
    grids = pattern(40)
    whole = trainer(prior_cfg(*common), tmp_path / "whole")
    whole.fit(grids)

    half = trainer(prior_cfg(*common, "prior.max_steps=3"), tmp_path / "split")
    half.fit(grids)
    resumed = trainer(prior_cfg(*common), tmp_path / "split")
    resumed.fit(grids)

    assert resumed.step == whole.step == 6
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(),
                            strict=True):  # fmt: skip
        assert torch.equal(a, b), name
    sa, sb = whole.opt.state_dict()["state"], resumed.opt.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)


def test_resume_refuses_a_checkpoint_of_other_tokens(prior_cfg, tmp_path):
    p = prior_cfg("prior.max_steps=2")
    trainer(p, tmp_path, tokens("first.pt", step=1)).fit(pattern(16))
    other = trainer(prior_cfg("prior.max_steps=4"), tmp_path, tokens("second.pt", step=9))
    with pytest.raises(RuntimeError, match=r"prior\.pt.*first\.pt \(step 1\).*second\.pt"):
        other.fit(pattern(16))
    assert (tmp_path / CHECKPOINT).is_file()  # left as it is


def test_resume_off_starts_again(prior_cfg, tmp_path):
    trainer(prior_cfg("prior.max_steps=2"), tmp_path).fit(pattern(16))
    again = trainer(prior_cfg("prior.max_steps=1", "prior.resume=false"), tmp_path)
    again.fit(pattern(16))
    assert again.step == 1


def test_a_preemption_signal_checkpoints_the_step_and_exits(prior_cfg, tmp_path):
    """As the training loop: the step ends, its checkpoint is written, and without a
    previous handler (a plain process) the run exits with 128 + signal."""
    t = trainer(prior_cfg("prior.max_steps=10", "prior.ckpt_every=100"), tmp_path)
    step = t.train_step

    def step_then_signal(grids):
        logs = step(grids)
        if t.step == 3:
            os.kill(os.getpid(), signal.SIGUSR2)
        return logs

    t.train_step = step_then_signal
    with pytest.raises(SystemExit) as exit_:
        t.fit(pattern(16))
    assert exit_.value.code == 128 + signal.SIGUSR2
    assert read_checkpoint(tmp_path / CHECKPOINT)["step"] == 3
