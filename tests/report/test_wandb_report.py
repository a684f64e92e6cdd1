"""``--wandb``: the report as one offline wandb run in the sweep's group (job type
``report``), read back from its run file: the summary and paired tables, the verdicts
table and the figures."""

from __future__ import annotations

import json

from omegaconf import OmegaConf

from dcvq import report as rp


def test_the_report_is_a_wandb_run_in_the_sweeps_group(
    tmp_path, make_row, offline_wandb, wandb_records
):
    sweep = tmp_path / "sweep"
    make_row(sweep, "vq", "vq", 0.0)
    make_row(sweep, "t128", "t128_s128", 1.0)
    # jobs of a multirun: their training runs logged to the group hydra.sweep.dir
    for hydra_file in sweep.glob("*/.hydra/hydra.yaml"):
        hydra = OmegaConf.load(hydra_file)
        OmegaConf.update(hydra, "hydra.mode", "MULTIRUN")
        OmegaConf.update(hydra, "hydra.sweep.dir", "multirun/my_sweep")
        OmegaConf.save(hydra, hydra_file)
    out = tmp_path / "out"
    try:
        assert rp.main([str(sweep), "--out", str(out), "--wandb"]) == 0
        (path,) = wandb_records.find_runs(out / "wandb")
        run = wandb_records.read_finished(path)
    finally:
        import wandb

        wandb.teardown()  # stop wandb's service: the next test starts from its own env
    assert run.finished and run.exit_code == 0
    assert (run.group, run.job_type, run.project) == ("multirun/my_sweep", "report", "dcvq")
    assert run.name == "report-my_sweep" and run.config["sweep_dirs"] == [str(sweep)]
    (row,) = run.history

    def table(key):
        ref = row[key]
        assert ref["_type"] == "table-file"
        return json.loads((path.parent / "files" / ref["path"]).read_text())

    summary = table("summary")
    assert "bits_per_image" in summary["columns"] and len(summary["data"]) == 2
    labels = [r[summary["columns"].index("label")] for r in summary["data"]]
    assert labels == ["Dual Codebook T-128/S-128", "VQ-GAN"]
    paired = table("paired")
    assert {"cluster_low", "cluster_high", "outcome"} <= set(paired["columns"])
    psnr = next(r for r in paired["data"] if r[paired["columns"].index("metric")] == "psnr")
    assert psnr[paired["columns"].index("outcome")] == "better"
    verdicts = table("verdicts")
    assert verdicts["columns"] == ["claim", "verdict", "evidence"]
    claims = {r[0]: r[1] for r in verdicts["data"]}
    dual = next(v for c, v in claims.items() if c.startswith("Dual Codebook beats VQ-GAN on"))
    assert dual.startswith("no verdict (") and "budget check: not run" in dual
    assert len(verdicts["data"]) == 6
    images = {k for k, v in row.items() if isinstance(v, dict) and v.get("_type") == "image-file"}
    assert images == {f"figures/{p.stem}" for p in (out / "figures").glob("*.png")} != set()


def test_wandb_disabled_logs_nothing(tmp_path, make_row, offline_wandb, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    make_row(tmp_path, "vq", "vq", 0.0, seeds=(0,))
    rep = rp.report(tmp_path, wandb=True, draw=False)
    assert rep.wandb_dir is None and not (tmp_path / "wandb").exists()
