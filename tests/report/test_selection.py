"""``--select KEY``: per row, the value with the best mean validation PSNR over its seeds
is chosen, and the row reports its test numbers at that value; selection runs (possibly
at a smaller budget, in another sweep dir) and the final runs are told apart; runs at
values not chosen are listed, never dropped."""

from __future__ import annotations

import csv

import pytest

from dcvq import report as rp

#: validation and test PSNR gains by learning rate: val prefers 3e-4, test 1e-3
VAL = {1e-4: 0.0, 3e-4: 1.0, 1e-3: 0.5}
TEST = {1e-4: 0.0, 3e-4: 0.3, 1e-3: 2.0}


@pytest.fixture
def lr_run(make_run, fakes):
    """``lr_run(root, name, option, lr, seed, val_db, test_db, steps=100, **kw)``."""
    base, base_test = fakes.base_values(), fakes.base_values(4321)

    def make(root, name, option, lr, seed, val_db, test_db, steps=100, **kw):
        noise = 7 * seed + int(lr * 1e5)
        return make_run(
            root, name, option, seed=seed, max_steps=steps, extra={"trainer.lr": lr},
            values=fakes.shifted(base, val_db, 0.05, seed=noise),
            test=fakes.shifted(base_test, test_db, 0.05, seed=noise + 1),
            test_names=fakes.TEST_NAMES, **kw,
        )  # fmt: skip

    return make


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_selection_picks_by_val_not_by_test(tmp_path, lr_run):
    """A grid of three learning rates, three seeds each: validation chooses 3e-4 though
    the test split would prefer 1e-3; the row's numbers are test numbers at 3e-4."""
    for lr in VAL:
        for seed in (0, 1, 2):
            lr_run(tmp_path, f"vq_lr{lr}_s{seed}", "vq", lr, seed, VAL[lr], TEST[lr])
    rep = rp.report(tmp_path, select=["trainer.lr"])
    (config,) = rep.sections[0].configs
    assert config.selected == {"trainer.lr": 3e-4} and config.seeds == [0, 1, 2]
    assert config.selection.chosen == (3e-4,) and config.selection.mismatch is None
    (row,) = rows(rep.summary)
    assert row["trainer.lr"] == "0.0003" and row["judged_on"] == "test"
    assert row["selection"].startswith("best mean validation PSNR over seeds at 100 steps")
    assert "trainer.lr=0.0003 (" in row["selection"] and row["selection_warning"] == ""
    test_mean = [r.results["test"]["psnr"] for r in config.finished]
    assert float(row["psnr_mean"]) == pytest.approx(sum(test_mean) / 3)
    val_mean = [r.results["psnr"] for r in config.finished]
    assert float(row["val_psnr_mean"]) == pytest.approx(sum(val_mean) / 3)
    md = rep.markdown.read_text()
    assert "- VQ-GAN: trainer.lr=0.0003, chosen by best mean validation PSNR" in md
    others = md.split("## Runs that are not a row's seeds")[1]
    for lr in (1e-4, 1e-3):
        for seed in (0, 1, 2):
            assert (
                f"`vq_lr{lr}_s{seed}` (VQ-GAN): selection run (trainer.lr={lr}, 100 steps)"
                in others
            )
    assert (tmp_path / "figures" / "selection_table2-samples.png") in rep.figures
    fig = rp.selection_figure(rep.sections[0].configs)
    assert fig.axes[0].get_xscale() == "log"  # a learning rate
    # without --select every learning rate is a row of its own
    plain = rp.report(tmp_path, draw=False)
    labels = sorted(c.label for c in plain.sections[0].configs)
    assert labels == [f"VQ-GAN [trainer.lr={lr}]" for lr in ("0.0001", "0.0003", "0.001")]


def test_a_selection_sweep_then_a_final_sweep_and_a_budget_check(tmp_path, lr_run, capsys):
    """The study layout: one seed per value at half the budget, three seeds at the chosen
    value at the full budget, one at twice it; three sweep dirs, one report."""
    select, final, budget = tmp_path / "select", tmp_path / "final", tmp_path / "budget"
    for lr in VAL:
        collapsed = {"distinct": 3} if lr == 1e-3 else {}  # 1e-3 collapses its codebook
        lr_run(select, f"t128_lr{lr}", "t128_s128", lr, 0, VAL[lr], TEST[lr], 50, **collapsed)
    for seed in (0, 1, 2):
        lr_run(final, f"t128_s{seed}", "t128_s128", 3e-4, seed, 1.2, 0.8)
    lr_run(budget, "t128_2x", "t128_s128", 3e-4, 0, 1.4, 1.0, 200)
    out = tmp_path / "report"
    args = [str(select), str(final), str(budget), "--select", "trainer.lr"]
    assert rp.main(args) == 2
    assert "3 sweep dirs: name the folder to write the report to with --out DIR" in (
        capsys.readouterr().err
    )
    assert rp.main([*args, "--out", str(out)]) == 0
    configs = rp.group_runs(rp.collect_sweeps([select, final, budget]), ["trainer.lr"])
    (row,) = configs
    assert [r.rel for r in row.runs] == ["final/t128_s0", "final/t128_s1", "final/t128_s2"]
    assert row.max_steps == 100 and row.selection.steps == 50
    assert row.selection.chosen == (3e-4,) and row.selection.final == (3e-4,)
    assert [r.rel for r in row.budget_runs] == ["budget/t128_2x"]
    assert {r.rel: why for r, why in row.others} == {
        "select/t128_lr0.0001": "selection run (trainer.lr=0.0001, 50 steps)",
        "select/t128_lr0.0003": "selection run (trainer.lr=0.0003, 50 steps) (chosen)",
        "select/t128_lr0.001": "selection run (trainer.lr=0.001, 50 steps)",
    }
    md = (out / "report.md").read_text()
    assert "# Results: `" in md and str(final) in md.splitlines()[0]
    assert "`select/t128_lr0.001` (Dual Codebook T-128/S-128): selection run" in md
    assert "collapsed (global, local)" in md  # the trainer's rule: distinct < used / 2
    assert "`budget/t128_2x` (Dual Codebook T-128/S-128): budget check (200 steps)" in md
    assert "1 collapsed" in rows(out / "summary.csv")[0]["selection"]
    roles = {r["run"]: r["role"] for r in rows(out / "report.csv")}
    assert roles["final/t128_s1"] == "seed" and roles["budget/t128_2x"] == "budget check"
    assert (out / "figures" / "selection_table2-samples.png").is_file()


def test_final_runs_at_another_value_are_said_loudly(tmp_path, lr_run, capsys):
    select, final = tmp_path / "select", tmp_path / "final"
    for lr in VAL:
        lr_run(select, f"vq_lr{lr}", "vq", lr, 0, VAL[lr], TEST[lr], 50)
    for seed in (0, 1, 2):  # trained at 1e-3, which validation did not choose
        lr_run(final, f"vq_s{seed}", "vq", 1e-3, seed, 0.5, 2.0)
    out = tmp_path / "report"
    assert rp.main([str(select), str(final), "--select", "trainer.lr", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "WARNING: VQ-GAN: the row's runs (100 steps) are at trainer.lr=0.001" in err
    assert "but validation PSNR chose trainer.lr=0.0003" in err
    md = (out / "report.md").read_text()
    assert "**Not at the selected value**: the row's runs (100 steps) are at" in md
    (row,) = rows(out / "summary.csv")
    assert row["trainer.lr"] == "0.001" and "chose trainer.lr=0.0003" in row["selection_warning"]


def test_select_names_a_key_the_runs_have(tmp_path, make_run, capsys):
    make_run(tmp_path, "vq", "vq")
    assert rp.main([str(tmp_path), "--select", "trainer.lrr"]) == 2
    assert "--select trainer.lrr: no run's config has this key" in capsys.readouterr().err
    for key in ("seed", "trainer.max_steps", "trainer.num_workers"):
        assert rp.main([str(tmp_path), "--select", key]) == 2
        assert f"--select {key}: seeds, the budget" in capsys.readouterr().err
