"""python -m dcvq.report: a sweep's eval.json files as the paper's tables and figures."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from dcvq import report as rp

DUAL = "dcvq.quantizers.DualCodebookQuantizer"
GAN_LOSS = {"perceptual_weight": 1.25, "disc_factor": 1.0, "disc_weight": 0.8}
RED, GREEN = (255, 0, 0), (0, 255, 0)
HALF = 64  # height of each row of a fake sample grid: tall enough that nothing is rescaled


def dual(g: int, loc: int, transformer: bool = True) -> dict:
    return {
        "_target_": DUAL,
        "codebook_size": "${codebook.size}",
        "global_dim": g,
        "local_dim": loc,
        "global_transformer": transformer,
    }


def plain(target: str = "VectorQuantizer") -> dict:
    # ${model.embed_dim} cannot resolve in these configs: the report must not need it
    return {
        "_target_": f"dcvq.quantizers.{target}",
        "codebook_size": "${codebook.size}",
        "dim": "${model.embed_dim}",
    }


def results(fid: float, books: dict[str, list[int]], **extra) -> dict:
    """An eval.json as dcvq.evaluation writes it."""
    codebooks = {}
    for name, counts in books.items():
        used = sum(c > 0 for c in counts)
        total = sum(counts)
        ppl = math.exp(-sum(c / total * math.log(c / total) for c in counts if c))
        codebooks[name] = {
            "size": len(counts),
            "used": used,
            "usage": 100 * used / len(counts),
            "dead": len(counts) - used,
            "perplexity": ppl,
            "counts": counts,
        }
    return {
        "fid": fid,
        "psnr": 20.5,
        "l1": 0.07,
        "l2": 0.011,
        "ssim": 0.61,
        "lpips": 0.12,
        "codebooks": codebooks,
        "protocol": "vqct",
        "split": "val",
        "n_images": 40504,
        "skipped": [],
        "versions": {},
        "step": 100000,
    } | extra


def counts(n: int, dead: int = 0) -> list[int]:
    return [0] * dead + [(i % 7) + 1 for i in range(n - dead)]


def grid(path: Path, inputs: tuple, recon: tuple, width: int = 4 * HALF) -> None:
    img = Image.new("RGB", (width, 2 * HALF), inputs)
    img.paste(Image.new("RGB", (width, HALF), recon), (0, HALF))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def job(
    root: Path,
    name: str,
    quantizer: dict,
    size: int,
    choices: dict,
    *,
    result: dict | None,
    loss: dict | None = None,
    inputs: tuple = (90, 90, 90),
) -> Path:
    """A Hydra job dir: .hydra/{config,hydra}.yaml, eval.json, two sample grids."""
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    cfg = {
        "quantizer": quantizer,
        "codebook": {"size": size},
        "loss": loss or GAN_LOSS,
        "dataset": {"_target_": "dcvq.data.coco.COCO", "root": None},
        "logger": {"name": "${hydra:runtime.choices.quantizer}"},
    }
    OmegaConf.save(OmegaConf.create(cfg), d / ".hydra" / "config.yaml")
    hydra = {"hydra": {"runtime": {"choices": {"dataset": "coco", **choices}}}}
    OmegaConf.save(OmegaConf.create(hydra), d / ".hydra" / "hydra.yaml")
    if result is not None:
        (d / "eval.json").write_text(json.dumps(result))
    # the report must take the LAST grid: the earlier one is green, the last red
    grid(d / "samples" / "step_0000002.png", inputs, GREEN)
    grid(d / "samples" / "step_0000004.png", inputs, RED)
    return d


@pytest.fixture
def table2_sweep(tmp_path) -> Path:
    """Two launches below one folder, as `multirun/table2/<time>/<job>`."""
    root = tmp_path / "table2"
    first, second = root / "2026-01-01_00-00-00", root / "2026-01-02_00-00-00"
    t2 = {"experiment": "table2"}
    job(
        first,
        "0_s128_s128_n512",
        dual(128, 128, False),
        512,
        t2 | {"quantizer": "s128_s128"},
        result=results(5.01, {"global": counts(512, 40), "local": counts(512)}),
    )
    job(
        first,
        "1_t128_s128_n512",
        dual(128, 128),
        512,
        t2 | {"quantizer": "t128_s128"},
        result=results(4.31, {"global": counts(512), "local": counts(512, 3)}),
    )
    job(
        first,
        "2_t192_s64_n512",
        dual(192, 64),
        512,
        t2 | {"quantizer": "t192_s64"},
        result=results(4.77, {"global": counts(512), "local": counts(512)}),
    )
    unfinished = job(
        first, "3_t64_s192_n512", dual(64, 192), 512, t2 | {"quantizer": "t64_s192"}, result=None
    )
    (unfinished / "train.jsonl").write_text('{"step": 1200}\n{"step": 1234}\n{"ste')
    (unfinished / "checkpoints").mkdir()
    (unfinished / "checkpoints" / "last.pt").write_bytes(b"")
    job(
        first,
        "4_vq_n512",
        plain(),
        512,
        t2 | {"quantizer": "vq"},
        result=results(15.5, {"codebook": counts(512, 400)}),
    )
    # row (i) as the paper ran it: VQ-GAN with 1024 codes; a different inputs batch
    job(
        second,
        "0_vq_n1024",
        plain(),
        1024,
        t2 | {"quantizer": "vq"},
        inputs=(10, 20, 30),
        result=results(14.9, {"codebook": counts(1024, 700)}),
    )
    return root


def md_line(text: str, *cells: str) -> str:
    """The one markdown table line that starts with these cells."""
    start = "| " + " | ".join(cells) + " |"
    found = [ln for ln in text.splitlines() if ln.startswith(start)]
    assert len(found) == 1, (start, found)
    return found[0]


def test_table2_laid_out_like_the_paper_with_its_numbers(table2_sweep):
    rep = rp.report(table2_sweep, draw=False)
    md = rep.markdown.read_text()
    assert "## Table 2 · MS-COCO" in md
    assert "protocol `vqct` on split `val` (40,504 images)" in md
    # paper row order (i)..(v), ours then the paper's number for each metric
    assert "| 4.31 | 4.19 | 20.50 | 20.72 | 0.0700 | 0.0717 | 0.0110 | 0.0103 |" in md_line(
        md, "(v)", "Dual Codebook", "T-128", "S-128", "512"
    )
    assert "| 5.01 | 4.91 |" in md_line(md, "(ii)", "Dual Codebook", "S-128", "S-128", "512")
    assert "| 4.77 | 4.67 |" in md_line(md, "(iii)", "Dual Codebook", "T-192", "S-64", "512")
    assert "| 14.90 | 14.45 |" in md_line(md, "(i)", "VQ-GAN", "-", "-", "1024")
    # usage per codebook, global / local
    assert "| 100.0 / 99.4 |" in md_line(md, "(v)", "Dual Codebook", "T-128")
    missing = md_line(md, "(iv)", "Dual Codebook", "T-64", "S-192", "512")
    assert "| — | 4.12 |" in missing and "missing" in missing
    # vq at 512 is not the paper's row (i): its own line, no paper numbers
    assert "| 15.50 | — |" in md_line(md, "", "VQ-GAN", "-", "-", "512")
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    order = [ln.split(" | ")[0] for ln in lines[1:]]
    assert order == ["| (i)", "| (ii)", "| (iii)", "| (iv)", "| (v)", "| "]
    tail = md.split("## Missing runs")[1]
    assert "3_t64_s192_n512" in tail and "last logged step 1234" in tail
    assert "checkpoint present" in tail

    with open(rep.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and [r["status"] for r in rows].count("missing") == 1
    ours = next(r for r in rows if r["global"] == "T-128")
    assert (ours["model"], ours["local"], ours["codebook_size"]) == (
        "Dual Codebook",
        "S-128",
        "512",
    )
    assert ours["paper_fid"] == "4.19" and float(ours["fid"]) == 4.31
    assert ours["table"] == "2" and ours["protocol"] == "vqct" and ours["split"] == "val"
    assert float(ours["usage_local"]) == pytest.approx(100 * 509 / 512)
    assert ours["dead_local"] == "3" and ours["usage_codebook"] == ""
    vq512 = next(r for r in rows if r["model"] == "VQ-GAN" and r["codebook_size"] == "512")
    assert vq512["paper_fid"] == "" and vq512["dead_codebook"] == "400"
    assert next(r for r in rows if r["codebook_size"] == "1024")["paper_fid"] == "14.45"


def test_figures_are_pngs_from_the_last_grids(table2_sweep):
    rep = rp.report(table2_sweep)
    names = sorted(p.name for p in rep.figures)
    assert names == ["reconstructions_table2-ms-coco.png", "usage_table2-ms-coco.png"]
    for path in rep.figures:
        with Image.open(path) as im:
            im.verify()
        assert f"](figures/{path.name})" in rep.markdown.read_text()
    with Image.open(table2_sweep / "figures" / "reconstructions_table2-ms-coco.png") as im:
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
        # inputs, 6 runs (the unfinished one shows its progress), a second inputs row for
        # the run whose batch differs: 8 rows of HALF pixels
        assert im.height == 8 * HALF
    assert RED in colours and GREEN not in colours  # only the last grid of each run
    assert (10, 20, 30) in colours  # the other run's own inputs
    with Image.open(table2_sweep / "figures" / "usage_table2-ms-coco.png") as im:
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
        # the 5 finished runs one under another, two codebook panels wide
        assert im.width >= 2 * rp.figures.MAX_COLUMNS and 5 * 150 <= im.height <= 5 * 400
    assert rp.COLOURS["global"] in colours and rp.COLOURS["local"] in colours
    assert rp.DEAD_COLOUR in colours


def test_usage_figure_puts_codebooks_side_by_side():
    runs = {
        "dual": rp.Run(
            Path("a"),
            "a",
            "2",
            "MS-COCO",
            "Dual Codebook",
            "T-128",
            "S-128",
            512,
            results(4.0, {"global": counts(512, 10), "local": counts(512)}),
        ),
        "vq": rp.Run(
            Path("b"),
            "b",
            "2",
            "MS-COCO",
            "VQ-GAN",
            "",
            "",
            1024,
            results(14.0, {"codebook": counts(1024, 900)}),
        ),
        "big": rp.Run(
            Path("c"),
            "c",
            None,
            "MS-COCO",
            "VQ-GAN",
            "",
            "",
            4096,
            results(14.0, {"codebook": counts(4096, 5)}),
        ),
    }
    dual_fig, vq_fig, big_fig = (rp.usage_section_figure([r]) for r in runs.values())
    # one panel per codebook, in one row: global left, local right
    left, right = (ax.get_position() for ax in dual_fig.axes)
    assert left.y0 == pytest.approx(right.y0) and left.x1 < right.x0
    assert [ax.get_title(loc="left").split(":")[0] for ax in dual_fig.axes] == ["global", "local"]
    assert len(vq_fig.axes) == 1 and dual_fig.get_figwidth() == 2 * vq_fig.get_figwidth()
    # 4096 codes folded into MAX_COLUMNS columns, the 5 dead codes still marked
    bars, dead = (p.get_data().values for p in big_fig.axes[0].patches)
    assert len(bars) == rp.figures.MAX_COLUMNS and (dead > dead.min()).sum() == 1
    none = rp.Run(Path("d"), "d", None, "x", "VQ-GAN", "", "", 8, None)
    assert rp.usage_section_figure([none]) is None
    # a section: runs one under another, codebooks in the same columns
    both = rp.usage_section_figure([runs["dual"], runs["vq"]])
    assert both.get_figwidth() == dual_fig.get_figwidth()
    assert [ax.get_visible() for ax in both.axes] == [True, True, True, False]


def test_folding_keeps_used_and_dead_codes():
    peak, dead, per_col = rp.figures.fold_counts(np.array([0, 5, 1, 1, 2]), max_columns=2)
    assert per_col == 3 and peak.tolist() == [5, 2] and dead.tolist() == [True, False]
    # the padding of a short last column is not a dead code
    assert not rp.figures.fold_counts(np.ones(1001, dtype=int), 512)[1].any()
    assert rp.figures.fold_counts(np.arange(8), 512)[0].tolist() == list(range(8))


def test_an_option_the_paper_does_not_have_gets_its_own_row(table2_sweep):
    """A new quantizer (or baseline) option is named after itself, never filed under a
    paper row; the paper's rows stay as they were."""
    launch = table2_sweep / "2026-01-03_00-00-00"
    t2 = {"experiment": "table2"}
    books = {"codebook": counts(512)}
    job(launch, "0_my_vq_n512", plain(), 512, t2 | {"quantizer": "my_vq"}, result=results(9, books))
    dual_books = {"global": counts(512), "local": counts(512)}
    q = {"quantizer": "t256_s64"}
    job(launch, "1_t256_s64_n512", dual(256, 64), 512, t2 | q, result=results(3.9, dual_books))
    base = {"quantizer": None, "baseline": "mine"}
    job(launch, "2_mine_n512", plain("GumbelQuantizer"), 512, t2 | base, result=results(8, books))
    rep = rp.report(table2_sweep, draw=False)
    md = rep.markdown.read_text()
    assert "| 9.00 | — |" in md_line(md, "", "my_vq", "-", "-", "512")
    assert "| 3.90 | — |" in md_line(md, "", "t256_s64", "T-256", "S-64", "512")
    assert "| 8.00 | — |" in md_line(md, "", "mine", "-", "-", "512")
    # the paper's rows are all still there, and VQ-GAN at 512 is still only the vq run
    assert "| 14.90 | 14.45 |" in md_line(md, "(i)", "VQ-GAN", "-", "-", "1024")
    assert "| 4.31 | 4.19 |" in md_line(md, "(v)", "Dual Codebook", "T-128", "S-128", "512")
    assert "| 15.50 | — |" in md_line(md, "", "VQ-GAN", "-", "-", "512")
    with open(rep.csv, newline="") as f:
        models = [r["model"] for r in csv.DictReader(f)]
    assert {"my_vq", "t256_s64", "mine"} <= set(models) and models.count("VQ-GAN") == 2


def test_table1_names_baselines_as_the_paper(tmp_path):
    t1 = {"experiment": "table1_coco"}
    books = {"codebook": counts(1024, 100)}
    no_gan = {"perceptual_weight": 0.0, "disc_factor": 0.0, "disc_weight": 0.8}
    job(
        tmp_path,
        "0_vqvae_n1024",
        plain(),
        1024,
        t1 | {"quantizer": "vq", "baseline": "vqvae"},
        loss=no_gan,
        result=results(80.0, books),
    )
    job(
        tmp_path,
        "1_gumbel_n1024",
        plain("GumbelQuantizer"),
        1024,
        t1 | {"quantizer": None, "baseline": "gumbel"},
        result=results(16.0, books),
    )
    job(
        tmp_path,
        "2_cvq_n1024",
        plain("CVQQuantizer"),
        1024,
        t1 | {"quantizer": None, "baseline": "cvq"},
        result=results(10.5, books),
    )
    job(
        tmp_path, "3_vq_n1024", plain(), 1024, t1 | {"quantizer": "vq"}, result=results(14.0, books)
    )
    job(
        tmp_path,
        "4_t128_s128_n512",
        dual(128, 128),
        512,
        t1 | {"quantizer": "t128_s128"},
        result=results(4.5, {"global": counts(512), "local": counts(512)}),
    )
    assert rp.main([str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "## Table 1 · MS-COCO" in md and "ADE20K" not in md  # only the datasets run
    assert "| 80.00 | 86.21 |" in md_line(md, "VQ-VAE", "-", "-", "1024")
    assert "| 16.00 | 15.30 |" in md_line(md, "Gumbel-VQ", "-", "-", "1024")
    assert "| 10.50 | 9.94 |" in md_line(md, "CVQ", "-", "-", "1024")
    assert "| 14.00 | 14.45 |" in md_line(md, "VQ-GAN", "-", "-", "1024")
    assert "| 4.50 | 4.19 |" in md_line(md, "Dual Codebook", "T-128", "S-128", "512")
    assert "numbers only" in md_line(md, "VQCT", "-", "-", "6207")
    assert "baseline numbers as reported by VQCT" in md
    # the paper's own L1/L2 cannot be on VQCT's [-1, 1] scale: flagged from its numbers
    assert "**Paper L1/L2 scale**: Dual Codebook T-128/S-128:" in md
    assert "MS-COCO Dual Codebook: PSNR 20.72 dB, L2 0.0103 implies at least 25.9 dB" in md


def test_paper_rows_whose_l2_is_off_vqct_scale():
    """Per-image PSNR averaged >= the PSNR of the mean MSE: VQCT's baseline rows keep to
    the bound their [-1, 1] L2 implies, the paper's own rows fall ~5 dB below it."""
    rows = rp.load_paper(rp.default_paper_files())
    flagged = {(r.table, r.model) for r in rows if rp.off_scale(r)}
    assert flagged and all(model == "Dual Codebook" for _, model in flagged)
    assert all(not rp.off_scale(r) for r in rows if "VQCT" in r.note)
    assert rp.psnr_bound_on_vqct_scale(0.04) == pytest.approx(20.0)


def test_names_come_from_the_config_without_hydra_choices():
    def cfg(q, loss=GAN_LOSS, size=1024):
        return OmegaConf.create({"quantizer": q, "codebook": {"size": size}, "loss": loss})

    no_gan = {"perceptual_weight": 0, "disc_factor": 0}
    assert rp.describe(cfg(plain()), {}) == ("VQ-GAN", "", "", 1024)
    assert rp.describe(cfg(plain(), no_gan), {}) == ("VQ-VAE", "", "", 1024)
    assert rp.describe(cfg(plain("GumbelQuantizer")), {})[0] == "Gumbel-VQ"
    assert rp.describe(cfg(plain("CVQQuantizer")), {})[0] == "CVQ"
    assert rp.describe(cfg(dual(64, 192), size=512), {}) == ("Dual Codebook", "T-64", "S-192", 512)
    assert rp.describe(cfg(dual(128, 128, False)), {})[1:3] == ("S-128", "S-128")
    # with Hydra's choices: the paper's options keep the paper's names, others their own
    assert rp.describe(cfg(plain()), {"quantizer": "vq"})[0] == "VQ-GAN"
    assert rp.describe(cfg(dual(128, 128)), {"quantizer": "t128_s128"})[0] == "Dual Codebook"
    assert rp.describe(cfg(plain()), {"quantizer": "my_vq"}) == ("my_vq", "", "", 1024)
    assert [
        rp.table_of_experiment(e) for e in ("table1_ade20k", "table2", "tableS1_cub", "demo", None)
    ] == ["1", "2", "S1", None, None]


def test_paper_and_table_options(tmp_path):
    job(
        tmp_path,
        "0_t128_s128_n512",
        dual(128, 128),
        512,
        {"quantizer": "t128_s128"},
        result=results(3.3, {"global": counts(512), "local": counts(512)}),
    )
    paper = tmp_path / "mine.csv"
    paper.write_text(
        "table,dataset,model,global,local,codebook_size,fid,psnr,l1,l2,source_note\n"
        "3,MS-COCO,Dual Codebook,T-128,S-128,512,4.19,20.72,0.0717,0.0103,x\n"
    )
    assert rp.main([str(tmp_path), "--paper", str(paper), "--table", "3"]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "## Table 3 · MS-COCO" in md and f"`{paper}`" in md
    assert "| 3.30 | 4.19 |" in md_line(md, "(i)", "Dual Codebook", "T-128", "S-128", "512")
    # no experiment choice and no --table: grouped by dataset, paper numbers still matched
    assert rp.main([str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "## MS-COCO" in md and "| 3.30 | 4.19 |" in md_line(md, "Dual Codebook", "T-128")


def test_unfinished_sweep_and_wrong_dir(tmp_path, capsys):
    assert rp.main([str(tmp_path / "nope")]) == 2
    assert rp.main([str(tmp_path)]) == 2
    assert "no job directories" in capsys.readouterr().err
    job(tmp_path, "0_t128_s128_n512", dual(128, 128), 512, {"experiment": "table2"}, result=None)
    (tmp_path / "0_t128_s128_n512" / "eval.json").write_text("{truncated")
    job(tmp_path, "1_vq_n512", plain(), 512, {"experiment": "table2"}, result=None)
    assert rp.main([str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "2 runs, 0 finished, 2 missing" in md and "no finished runs yet" in md
    assert "eval.json unreadable" in md and "nothing logged" in md
    with open(tmp_path / "report.csv", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["missing", "missing"]


def test_a_real_tiny_run(tiny_cfg, tmp_path):
    """A run trained by dcvq's own loop: its real eval.json and sample grid."""
    from dcvq.trainer import train

    cfg = tiny_cfg("trainer.max_steps=1", "eval.max_images=2", "dataset.resolution=16")
    run_dir = tmp_path / "sweep" / "0_t128_s128_n32"
    train(cfg, run_dir)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    choices = {"quantizer": "t128_s128", "dataset": "samples", "experiment": "table2"}
    OmegaConf.save(
        OmegaConf.create({"hydra": {"runtime": {"choices": choices}}}),
        run_dir / ".hydra" / "hydra.yaml",
    )
    rep = rp.report(tmp_path / "sweep")
    (run,) = rep.runs
    assert run.ok and run.key == ("samples", "Dual Codebook", "T-128", "S-128", 32)
    md = rep.markdown.read_text()
    line = md_line(md, "", "Dual Codebook", "T-128", "S-128", "32")
    assert f"{run.results['psnr']:.2f}" in line and "`0_t128_s128_n32`" in line
    assert "protocol `clean`" in md and "Not the paper's protocol" in md
    assert {p.name for p in rep.figures} == {
        "usage_table2-samples.png",
        "reconstructions_table2-samples.png",
    }
