"""trainer.on_collapse (dcvq/trainer/collapse.py) and trainer.codebook_lr_mult.

Whether a tiny run's codebook collapses depends on its dynamics; the policy is tested by
making the collapse check report a collapse at chosen evaluations (the check itself is
tested on its own below), through the real training loop."""

from __future__ import annotations

import json

import pytest

from dcvq.checkpoint import read_checkpoint
from dcvq.config import ConfigError, validate
from dcvq.trainer import collapse, loop, train
from dcvq.trainer.collapse import CodebookCollapsed

RUN = ["trainer.max_steps=6", "trainer.eval_every=2", "trainer.ckpt_every=2"]


def test_a_codebook_whose_used_codes_are_few_vectors_has_collapsed():
    books = {
        "global": {"used": 100, "distinct": 1},  # merged codes, spread indices
        "local": {"used": 40, "distinct": 40},
        "codebook": {"used": 10},  # distinct not counted: not judged
    }
    assert collapse.collapsed(books) == ["global"]
    assert collapse.collapsed({"global": {"used": 10, "distinct": 5}}) == []  # half: healthy


@pytest.fixture
def collapse_at(monkeypatch):
    """``collapse_at(*steps) -> evaluated``: the trainer's check reports the global codebook
    collapsed at the periodic evaluations of these steps (each once); ``evaluated`` lists
    the steps of the periodic evaluations it judged."""

    def make(*steps: int) -> list[int]:
        pending, evaluated, at = list(steps), [], []
        record = loop.Trainer.record_eval

        def record_step(trainer, results, grid_batch):
            at.append(trainer.step)
            record(trainer, results, grid_batch)

        def check(codebooks):
            if at[-1] in pending:
                pending.remove(at[-1])
                return ["global"]
            return []

        def judged(trainer, results, saved):
            evaluated.append(trainer.step)
            return after(trainer, results, saved)

        after = loop.Trainer.after_collapse_check
        monkeypatch.setattr(loop.Trainer, "record_eval", record_step)
        monkeypatch.setattr(loop.Trainer, "after_collapse_check", judged)
        monkeypatch.setattr(loop, "collapsed", check)
        return evaluated

    return make


def test_stop_ends_the_run_and_leaves_its_checkpoint(tiny_cfg, tmp_path, collapse_at):
    collapse_at(4)
    with pytest.raises(
        CodebookCollapsed,
        match=r"step 4: codebook 'global' \(.*\) collapsed \(trainer.on_collapse=stop\)",
    ):
        train(tiny_cfg(*RUN, "trainer.on_collapse=stop"), tmp_path)
    assert read_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 4
    assert not (tmp_path / "eval.json").exists()


def test_rollback_goes_back_to_the_last_healthy_evaluation_with_a_lower_codebook_rate(
    tiny_cfg, tmp_path, collapse_at
):
    evaluated = collapse_at(4)
    cfg = tiny_cfg(*RUN, "trainer.on_collapse=rollback", "trainer.collapse_lr_factor=0.5")
    results = train(cfg, tmp_path)
    # periodic evaluations at 2 (healthy), 4 (collapsed: back to 2), then 4 again
    assert evaluated == [2, 4, 4]
    assert results["step"] == 6 and results["codebook_lr_scale"] == 0.5
    assert [(r["at_step"], r["to_step"]) for r in results["rollbacks"]] == [(4, 2)]
    state = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["codebook_lr_scale"] == 0.5 and len(state["rollbacks"]) == 1  # on resume
    lines = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in lines]
    assert steps == [1, 2, 3, 4, 3, 4, 5, 6]  # steps 3 and 4 trained again
    # the codebook's rate, before and after the rollback, against the rest's
    for i, x in enumerate(lines):
        assert x["lr_codebook"] == pytest.approx(x["lr"] * (0.5 if i >= 4 else 1.0))


def test_rollbacks_are_bounded(tiny_cfg, tmp_path, collapse_at):
    collapse_at(4)
    cfg = tiny_cfg(*RUN, "trainer.on_collapse=rollback", "trainer.max_rollbacks=0")
    with pytest.raises(CodebookCollapsed, match="trainer.max_rollbacks"):
        train(cfg, tmp_path)


def test_codebook_lr_mult_gives_the_codebook_its_own_rate(tiny_cfg, tmp_path):
    train(tiny_cfg("trainer.codebook_lr_mult=0.1", "trainer.lr=1e-3"), tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert all(x["lr_codebook"] == pytest.approx(0.1 * x["lr"]) for x in lines)
    state = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    groups = state["opt_ae"]["param_groups"]
    assert [g["codebook"] for g in groups] == [False, True]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.on_collapse=ignore", "trainer.on_collapse='ignore'"),
        ("trainer.collapse_lr_factor=1.5", "trainer.collapse_lr_factor=1.5"),
        ("trainer.codebook_lr_mult=0", "trainer.codebook_lr_mult=0"),
    ],
)
def test_bad_settings_name_their_key(tiny_cfg, override, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[")):
        validate(tiny_cfg(override))
