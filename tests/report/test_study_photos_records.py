"""experiments/study_photos's committed run records: its README's selection table is what
they say, each record is the preset's config with its overrides (so the README's
commands, re-launched into a copy of the records, train only what is missing), and each
final run trains at the rate its row chose."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from dcvq.config.diff import result_changes

STUDY = Path(__file__).resolve().parents[2] / "experiments" / "study_photos"
RECORDS = STUDY / "selection" / "runs"
FINAL = STUDY / "runs"  # the final sweeps (2,000 steps) and the budget check (4,000)
RATES = {"1e-4": 1e-4, "3e-4": 3e-4, "1e-3": 1e-3, "3e-3": 3e-3, "1e-2": 1e-2}
ROWS = {"VQ-GAN": "vq", "S-128/S-128": "s128_s128", "T-128/S-128": "t128_s128",
        "T-192/S-64": "t192_s64", "T-64/S-192": "t64_s192"}  # fmt: skip


def readme_table() -> list[dict[str, str]]:
    """The rows of the README's table between the ``selection`` markers."""
    text = (STUDY / "README.md").read_text()
    block = re.search(r"<!-- selection -->\n(.*?)<!-- /selection -->", text, re.DOTALL)
    assert block, "the README's selection table"
    lines = [ln for ln in block.group(1).splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")), strict=True))
            for ln in lines[2:]]  # fmt: skip


def records() -> dict[tuple[str, int, float], dict]:
    out = {}
    for path in sorted(RECORDS.glob("*/eval.json")):
        results = json.loads(path.read_text())
        cfg = results["config"]
        key = (path.parent.name.split("_n")[0], cfg["codebook"]["size"], cfg["trainer"]["lr"])
        assert key not in out, f"two runs of {key}"
        out[key] = results
    return out


def test_the_selection_table_is_the_records():
    runs, table = records(), readme_table()
    assert len(table) == 8 and runs
    for row in table:
        q, n = ROWS[row["Row"]], int(row["Codes"])
        ran = {}
        for name, lr in RATES.items():
            run = runs.pop((q, n, lr), None)
            assert row[name] == (f"{run['psnr']:.2f}" if run else "—"), (row, name)
            if run:
                ran[lr] = run["psnr"]
                assert run["step"] == 1000 and run["split"] == "val" and run["device"] == "cpu"
        chosen = row["Chosen"]
        if chosen != "pending":  # the best val PSNR, bracketed: the next rate up has run
            best = max(ran, key=ran.get)
            assert {1e-4, 3e-4, 1e-3} <= set(ran) and RATES[chosen.split()[0]] == best, row
            higher = [lr for lr in RATES.values() if lr > best]
            assert not higher or higher[0] in ran, row
    assert not runs, f"runs the table lacks: {sorted(runs)}"


def test_each_record_is_the_presets_config_with_its_overrides():
    from hydra import compose, initialize_config_dir

    from dcvq.config import CONF_DIR, register

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for run in sorted([*RECORDS.iterdir(), *FINAL.glob("*/")]):
            saved = json.loads((run / "eval.json").read_text())["config"]
            overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
            assert overrides[0] == "experiment=study_photos", run.name
            cfg = compose(config_name="train", overrides=overrides)
            assert result_changes(saved, cfg) == [], run.name


def test_final_runs_train_at_their_rows_chosen_rate():
    chosen = {(ROWS[r["Row"]], int(r["Codes"])): r["Chosen"] for r in readme_table()}
    for path in sorted(FINAL.glob("*/eval.json")):
        run = json.loads(path.read_text())
        cfg = run["config"]
        rate = chosen[(path.parent.name.split("_n")[0], cfg["codebook"]["size"])]
        assert rate != "pending" and cfg["trainer"]["lr"] == RATES[rate.split()[0]], path
        assert run["step"] == cfg["trainer"]["max_steps"] in (2000, 4000), path
        assert run["split"] == "val" and run["test"]["split"] == "test", path
        assert run["device"] == "cpu", path
