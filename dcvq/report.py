"""Collect a sweep's results into the paper's tables and figures.

``python -m dcvq.report SWEEP_DIR [--paper CSV ...] [--table 1|2|3|S1]``

Every job directory below ``SWEEP_DIR`` (a folder with ``.hydra/config.yaml``, at any
depth, so a folder of several sweeps works too) becomes one row. Rows are named as the
paper names them: ``VQ-GAN`` for the plain ``vq`` quantizer, ``Dual Codebook`` with
``Global``/``Local`` columns such as ``T-128``/``S-128`` read from the quantizer config,
``VQ-VAE``, ``Gumbel-VQ`` and ``CVQ`` from the ``+baseline=`` choice. The paper's
numbers (``experiments/*/paper.csv`` by default) are printed next to each matching row,
and the paper's rows that have no run yet are listed too, so each table reads like the
paper's. Jobs without ``eval.json`` (running, failed, preempted) are listed as missing.

Writes ``SWEEP_DIR/report.md``, ``SWEEP_DIR/report.csv`` and ``SWEEP_DIR/figures/``:
codebook-usage histograms as in the paper's Figure 3 (per run, every codebook side by
side, code counts by index) and reconstruction grids as in Figure 4 (the inputs, then
each run's reconstructions, from the last ``samples/step_*.png`` of each run). Figures
are drawn with PIL only.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageDraw, ImageFont

#: the repository (dcvq is installed editable from it): holds experiments/<table>/paper.csv
REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS_DIR = REPO / "experiments"

TABLE_ORDER = ("1", "2", "3", "S1")
METRICS = ("fid", "psnr", "l1", "l2")
EXTRA_METRICS = ("ssim", "lpips")
DIGITS = {"fid": 2, "psnr": 2, "l1": 4, "l2": 4, "ssim": 4, "lpips": 4}
HEADERS = {"fid": "FID", "psnr": "PSNR", "l1": "L1", "l2": "L2", "ssim": "SSIM", "lpips": "LPIPS"}
CODEBOOK_ORDER = ("global", "local", "codebook")

# Hydra option name -> the paper's name for it
DATASET_NAMES = {
    "ade20k": "ADE20K",
    "celebahq": "CelebA-HQ",
    "coco": "MS-COCO",
    "cub200": "CUB-200",
    "samples": "samples",
    "sampleimages": "samples",
    "imagefolder": "image folder",
}
BASELINE_NAMES = {"vqvae": "VQ-VAE", "gumbel": "Gumbel-VQ", "cvq": "CVQ"}
QUANTIZER_NAMES = {"GumbelQuantizer": "Gumbel-VQ", "CVQQuantizer": "CVQ"}
DUAL = "Dual Codebook"
PAPER_ONLY = ("VQCT",)

# Figure colours: the paper's Figure 3 draws the global codebook red, local (and VQ-GAN's
# single codebook) blue.
COLOURS = {"global": (214, 39, 40), "local": (31, 119, 180)}
DEFAULT_COLOUR = (31, 119, 180)
DEAD_COLOUR = (170, 170, 170)
PLOT_HEIGHT = 120


# ---- data ----------------------------------------------------------------------------
@dataclass
class PaperRow:
    """One row of the paper's tables (``tables.csv`` / ``experiments/*/paper.csv``)."""

    table: str
    dataset: str
    model: str
    global_: str
    local: str
    codebook_size: int
    metrics: dict[str, float | None]
    note: str

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (self.dataset, self.model, self.global_, self.local, self.codebook_size)


@dataclass
class Run:
    """One job directory of a sweep."""

    path: Path
    rel: str  # relative to the sweep dir, as printed
    table: str | None
    dataset: str
    model: str
    global_: str
    local: str
    codebook_size: int | None
    results: dict[str, Any] | None = None  # eval.json
    step: int | None = None
    sample: Path | None = None  # the last reconstruction grid
    problem: str | None = None  # why there are no results
    choices: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.results is not None

    @property
    def key(self) -> tuple[str, str, str, str, int | None]:
        return (self.dataset, self.model, self.global_, self.local, self.codebook_size)

    @property
    def name(self) -> str:
        """``T-128/S-128`` for the dual quantizers, the model's name otherwise."""
        return f"{self.global_}/{self.local}" if self.global_ else self.model

    @property
    def title(self) -> str:
        """``Dual Codebook T-128/S-128`` or ``VQ-GAN``."""
        return f"{self.model} {self.name}" if self.global_ else self.model

    @property
    def label(self) -> str:
        size = f", {self.codebook_size} codes" if self.codebook_size else ""
        return f"{self.title}{size}"


def _float(text: str) -> float | None:
    text = text.strip()
    return float(text) if text else None


def default_paper_files() -> list[Path]:
    """``experiments/*/paper.csv`` of this repository, in table order."""
    return sorted(EXPERIMENTS_DIR.glob("*/paper.csv"))


def load_paper(paths: Sequence[str | Path]) -> list[PaperRow]:
    """The paper's rows from one or more CSV files with ``tables.csv``'s columns."""
    rows: list[PaperRow] = []
    for path in paths:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                rows.append(
                    PaperRow(
                        table=r["table"].strip(),
                        dataset=r["dataset"].strip(),
                        model=r["model"].strip(),
                        global_=r.get("global", "").strip(),
                        local=r.get("local", "").strip(),
                        codebook_size=int(r["codebook_size"]),
                        metrics={m: _float(r.get(m, "")) for m in METRICS},
                        note=r.get("source_note", "").strip(),
                    )
                )
    return rows


def table_of_experiment(name: str | None) -> str | None:
    """``table1_coco`` -> ``1``, ``table2`` -> ``2``, ``tableS1_cub`` -> ``S1``."""
    m = re.match(r"table(S?\d+)(?:_|$)", name or "", flags=re.IGNORECASE)
    return m.group(1).upper() if m else None


def _select(cfg: DictConfig, key: str) -> Any:
    # Hydra saves the config unresolved; keys this module needs are plain values, and an
    # interpolation that cannot resolve here (e.g. ${hydra:...}) reads as None.
    try:
        return OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    except Exception:  # a damaged config must not stop the report
        return None


def describe(cfg: DictConfig, choices: dict[str, Any]) -> tuple[str, str, str, int | None]:
    """``(model, global, local, codebook size)`` named as the paper names them."""
    size = _select(cfg, "codebook.size")
    if not isinstance(size, int):
        size = _select(cfg, "quantizer.codebook_size")
    size = size if isinstance(size, int) else None
    baseline = choices.get("baseline")
    if baseline in BASELINE_NAMES:
        return BASELINE_NAMES[baseline], "", "", size
    target = str(_select(cfg, "quantizer._target_") or "").rsplit(".", 1)[-1]
    if _select(cfg, "quantizer.global_dim") is not None:
        kind = "T" if _select(cfg, "quantizer.global_transformer") else "S"
        g = f"{kind}-{_select(cfg, 'quantizer.global_dim')}"
        return DUAL, g, f"S-{_select(cfg, 'quantizer.local_dim')}", size
    if target in QUANTIZER_NAMES:
        return QUANTIZER_NAMES[target], "", "", size
    # plain nearest-neighbour VQ: VQ-VAE when trained without the GAN and perceptual terms
    no_gan = _select(cfg, "loss.disc_factor") == 0 or _select(cfg, "loss.disc_weight") == 0
    if no_gan and _select(cfg, "loss.perceptual_weight") == 0:
        return "VQ-VAE", "", "", size
    return "VQ-GAN", "", "", size


def dataset_name(cfg: DictConfig, choices: dict[str, Any]) -> str:
    choice = choices.get("dataset")
    if not choice:  # not run through Hydra's defaults: use the dataset class
        choice = str(_select(cfg, "dataset._target_") or "unknown").rsplit(".", 1)[-1]
    return DATASET_NAMES.get(str(choice).lower(), str(choice))


def _last_json_line(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 65536))  # the tail is enough for one line
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue  # a line cut by the seek or by a killed writer
    return None


def last_sample(job: Path) -> Path | None:
    """The last reconstruction grid (``samples/step_XXXXXXX.png`` sorts by step)."""
    grids = sorted((job / "samples").glob("*.png"))
    return grids[-1] if grids else None


def read_run(job: Path, sweep_dir: Path, table: str | None = None) -> Run:
    """One job dir -> :class:`Run`; never raises for a damaged or unfinished job."""
    rel = str(job.relative_to(sweep_dir)) if job != sweep_dir else "."
    choices: dict[str, Any] = {}
    hydra_file = job / ".hydra" / "hydra.yaml"
    problem = None
    try:
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        if hydra_file.is_file():
            node = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.runtime.choices")
            if node is not None:
                choices = OmegaConf.to_container(node, resolve=False)  # type: ignore[assignment]
    except Exception as e:  # a damaged job is listed as missing, never a crash
        cfg, problem = OmegaConf.create({}), f"unreadable config: {e}"
    model, g, loc, size = describe(cfg, choices)
    run = Run(
        path=job,
        rel=rel,
        table=table or table_of_experiment(choices.get("experiment")),
        dataset=dataset_name(cfg, choices),
        model=model,
        global_=g,
        local=loc,
        codebook_size=size,
        sample=last_sample(job),
        choices=choices,
    )
    eval_file = job / "eval.json"
    if problem is None and eval_file.is_file():
        try:
            run.results = json.loads(eval_file.read_text())
            run.step = run.results.get("step")
        except ValueError as e:
            problem = f"eval.json unreadable: {e}"
    if run.results is None:
        # train.jsonl is written every few steps, metrics.jsonl at each evaluation
        steps = [
            (_last_json_line(job / f) or {}).get("step") for f in ("train.jsonl", "metrics.jsonl")
        ]
        run.step = max((s for s in steps if isinstance(s, int)), default=None)
        ckpt = (job / "checkpoints" / "last.pt").is_file()
        where = f"last logged step {run.step}" if run.step is not None else "nothing logged"
        run.problem = problem or (
            f"no eval.json ({where}{', checkpoint present' if ckpt else ''}): "
            "still running, failed or preempted"
        )
    return run


def collect(sweep_dir: str | Path, table: str | None = None) -> list[Run]:
    """Every job dir (``.hydra/config.yaml``) at any depth below ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    jobs = sorted(
        {p.parent.parent for p in sweep_dir.rglob("config.yaml") if p.parent.name == ".hydra"}
    )
    return [read_run(job, sweep_dir, table) for job in jobs]


def match(run: Run, paper: Sequence[PaperRow]) -> PaperRow | None:
    """The paper's row for ``run``: same table (when known), dataset, model, halves, size."""
    for row in paper:
        if row.key == run.key and (run.table is None or row.table == run.table):
            return row
    return None


# ---- tables --------------------------------------------------------------------------
@dataclass
class Line:
    """One table line: a paper row, a run, or both side by side."""

    paper: PaperRow | None
    run: Run | None
    row_label: str = ""

    @property
    def model(self) -> str:
        return self.run.model if self.run else self.paper.model  # type: ignore[union-attr]

    @property
    def global_(self) -> str:
        return self.run.global_ if self.run else self.paper.global_  # type: ignore[union-attr]

    @property
    def local(self) -> str:
        return self.run.local if self.run else self.paper.local  # type: ignore[union-attr]

    @property
    def size(self) -> int | None:
        return self.run.codebook_size if self.run else self.paper.codebook_size  # type: ignore


@dataclass
class Section:
    table: str | None
    dataset: str
    lines: list[Line]

    @property
    def runs(self) -> list[Run]:
        return [ln.run for ln in self.lines if ln.run is not None]

    @property
    def title(self) -> str:
        return f"Table {self.table} · {self.dataset}" if self.table else self.dataset

    @property
    def slug(self) -> str:
        text = f"table{self.table}_{self.dataset}" if self.table else self.dataset
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _roman(i: int) -> str:
    return ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"][i] if i < 10 else str(i)


def _table_key(table: str | None) -> tuple[int, str]:
    if table is None:
        return (len(TABLE_ORDER) + 1, "")
    return (TABLE_ORDER.index(table), "") if table in TABLE_ORDER else (len(TABLE_ORDER), table)


def build_sections(runs: Sequence[Run], paper: Sequence[PaperRow]) -> list[Section]:
    """Group runs by (table, dataset) and lay each group out in the paper's row order."""
    groups: dict[tuple[str | None, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.table, run.dataset), []).append(run)
    datasets = list(dict.fromkeys(r.dataset for r in paper))  # the paper's order

    def order(key: tuple[str | None, str]) -> tuple:
        t, ds = key
        return (*_table_key(t), datasets.index(ds) if ds in datasets else len(datasets), ds)

    sections = []
    for table, ds in sorted(groups, key=order):
        section_runs = groups[(table, ds)]
        lines: list[Line] = []
        used: set[int] = set()
        rows = [r for r in paper if table is not None and r.table == table and r.dataset == ds]
        roman = table in ("2", "3")  # the ablation tables number their rows
        for i, row in enumerate(rows):
            label = f"({_roman(i)})" if roman else ""
            found = [r for r in section_runs if r.key == row.key]
            if found:
                lines.extend(Line(row, r, label) for r in found)
            else:
                lines.append(Line(row, None, label))
            used.update(id(r) for r in found)
        for run in section_runs:
            if id(run) not in used:
                lines.append(Line(match(run, paper) if table is None else None, run))
        sections.append(Section(table, ds, lines))
    return sections


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def _codebook_cells(run: Run) -> tuple[str, str]:
    books = (run.results or {}).get("codebooks") or {}
    names = [n for n in CODEBOOK_ORDER if n in books] + [
        n for n in books if n not in CODEBOOK_ORDER
    ]
    usage = " / ".join(_fmt(books[n].get("usage"), 1) for n in names) or "—"
    ppl = " / ".join(_fmt(books[n].get("perplexity"), 1) for n in names) or "—"
    return usage, ppl


def _line_cells(line: Line, roman: bool) -> list[str]:
    run, row = line.run, line.paper
    cells = [line.row_label] if roman else []
    cells += [line.model, line.global_ or "-", line.local or "-", str(line.size or "—")]
    res = run.results if run is not None and run.ok else {}
    for m in METRICS:
        cells += [_fmt(res.get(m), DIGITS[m]), _fmt(row.metrics.get(m) if row else None, DIGITS[m])]
    cells += [_fmt(res.get(m), DIGITS[m]) for m in EXTRA_METRICS]
    usage, ppl = _codebook_cells(run) if run is not None and run.ok else ("—", "—")
    if run is None:
        # VQCT needs a pretrained language codebook: the paper (and we) only copy its numbers
        where = "numbers only" if line.model in PAPER_ONLY else "not run"
    elif run.ok:
        where = f"`{run.rel}`"
    else:
        where = f"`{run.rel}` (missing: no eval.json)"
    step = str(run.step) if run is not None and run.step is not None else "—"
    return cells + [usage, ppl, step, where]


def psnr_bound_on_vqct_scale(l2: float) -> float:
    """The least mean PSNR an L2 on VQCT's [-1, 1] scale allows: per-image PSNR averaged
    is at least the PSNR of the mean MSE (Jensen), and MSE on [0, 1] is L2 / 4."""
    return -10 * math.log10(l2 / 4)


def off_scale(row: PaperRow, margin_db: float = 1.0) -> bool:
    """A paper row whose PSNR is well below the bound its L2 implies on [-1, 1]: its L1/L2
    cannot be on VQCT's scale. The margin covers the JPEG round trip of VQCT's PSNR."""
    psnr, l2 = row.metrics.get("psnr"), row.metrics.get("l2")
    return psnr is not None and bool(l2) and psnr < psnr_bound_on_vqct_scale(l2) - margin_db


def _scale_text(section: Section) -> str:
    rows = [ln.paper for ln in section.lines if ln.paper is not None and off_scale(ln.paper)]
    if not rows:
        return ""
    r = rows[0]
    names = ", ".join(dict.fromkeys(f"{p.model} {p.global_}/{p.local}".strip(" /") for p in rows))
    return (
        f" **Paper L1/L2 scale**: {names}: the paper's PSNR is below what its own L2 allows"
        f" on VQCT's [-1, 1] scale (e.g. {r.dataset} {r.model}: PSNR {r.metrics['psnr']:.2f}"
        f" dB, L2 {r.metrics['l2']:.4f} implies at least"
        f" {psnr_bound_on_vqct_scale(r.metrics['l2']):.1f} dB), so these L1/L2 look like [0, 1]"
        " values, 2x and 4x smaller than on [-1, 1]; compare them by PSNR and FID. Ours are"
        " on [-1, 1] under `vqct`, on [0, 1] under `clean`."
    )


def _protocol_text(section: Section) -> str:
    seen = []
    for run in section.runs:
        if run.ok:
            r = run.results or {}
            n = r.get("n_images")
            text = (
                f"protocol `{r.get('protocol')}` on split `{r.get('split')}` ({n:,} images)"
                if isinstance(n, int)
                else f"protocol `{r.get('protocol')}` on split `{r.get('split')}`"
            )
            if text not in seen:
                seen.append(text)
    ours = "; ".join(seen) if seen else "no finished runs yet"
    out = f"Ours: {ours}."
    protocols = {(run.results or {}).get("protocol") for run in section.runs if run.ok}
    if protocols - {"vqct"}:
        out += (
            " **Not the paper's protocol**: the paper's baseline numbers are VQCT's, under"
            " VQCT's protocol (`vqct`), so these are not comparable with them."
        )
    if section.table in ("2", "3"):
        if any(ln.paper for ln in section.lines):
            out += (
                f" Paper: its Table {section.table} (the paper does not state its protocol;"
                " `vqct` is the one its baselines were measured under)."
            )
    else:
        # e.g. "VQ-VAE, VQ-GAN, ...: baseline numbers as reported by VQCT; Dual Codebook: ..."
        by_note: dict[str, list[str]] = {}
        for ln in section.lines:
            if ln.paper and ln.paper.note and ln.paper.model not in by_note.get(ln.paper.note, []):
                by_note.setdefault(ln.paper.note, []).append(ln.paper.model)
        if by_note:
            parts = [f"{', '.join(models)}: {note}" for note, models in by_note.items()]
            out += " Paper: " + "; ".join(parts) + "."
    return out + _scale_text(section)


def render_markdown(
    sweep_dir: Path,
    sections: Sequence[Section],
    runs: Sequence[Run],
    paper_files: Sequence[Path],
    figures: dict[str, list[Path]],
) -> str:
    done = sum(r.ok for r in runs)
    out = [
        f"# Results: `{sweep_dir}`",
        "",
        f"{len(runs)} runs, {done} finished, {len(runs) - done} missing. Numbers are the final "
        "evaluation (`eval.json`) of each run; `paper` columns are the paper's numbers for "
        "the same table, dataset, model and codebook size. Usage % and perplexity are per "
        "codebook (global / local for the dual quantizers), counted over the whole split.",
        "",
        "Paper numbers from: " + (", ".join(f"`{p}`" for p in paper_files) or "none"),
        "",
    ]
    for section in sections:
        roman = section.table in ("2", "3")
        head = (["Row"] if roman else []) + ["Model", "Global", "Local", "Codebook size"]
        for m in METRICS:
            head += [HEADERS[m], f"{HEADERS[m]} paper"]
        head += [HEADERS[m] for m in EXTRA_METRICS] + ["Usage %", "Perplexity", "Step", "Run"]
        out += [f"## {section.title}", "", _protocol_text(section), ""]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        out += ["| " + " | ".join(_line_cells(ln, roman)) + " |" for ln in section.lines]
        out.append("")
        for fig in figures.get(section.slug, []):
            out += [f"![{fig.stem}](figures/{fig.name})", ""]
    missing = [r for r in runs if not r.ok]
    out += ["## Missing runs", ""]
    if missing:
        out += [f"- `{r.rel}` ({r.dataset}, {r.label}): {r.problem}" for r in missing]
    else:
        out.append("None: every run has its eval.json.")
    out.append("")
    return "\n".join(out)


def write_csv(path: Path, runs: Sequence[Run], paper: Sequence[PaperRow]) -> None:
    books = list(CODEBOOK_ORDER)
    for run in runs:
        books += [n for n in ((run.results or {}).get("codebooks") or {}) if n not in books]
    fields = [
        "table",
        "dataset",
        "model",
        "global",
        "local",
        "codebook_size",
        "status",
        *METRICS,
        *EXTRA_METRICS,
    ]
    for n in books:
        fields += [f"usage_{n}", f"dead_{n}", f"perplexity_{n}"]
    fields += [f"paper_{m}" for m in METRICS]
    fields += ["protocol", "split", "n_images", "step", "run"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for run in runs:
            res = run.results or {}
            row = match(run, paper)
            rec: dict[str, Any] = {
                "table": run.table or "",
                "dataset": run.dataset,
                "model": run.model,
                "global": run.global_,
                "local": run.local,
                "codebook_size": run.codebook_size or "",
                "status": "ok" if run.ok else "missing",
                "protocol": res.get("protocol", ""),
                "split": res.get("split", ""),
                "n_images": res.get("n_images", ""),
                "step": run.step if run.step is not None else "",
                "run": run.rel,
            }
            for m in (*METRICS, *EXTRA_METRICS):
                rec[m] = "" if res.get(m) is None else res[m]
            for n, cb in (res.get("codebooks") or {}).items():
                rec |= {
                    f"usage_{n}": cb.get("usage"),
                    f"dead_{n}": cb.get("dead"),
                    f"perplexity_{n}": cb.get("perplexity"),
                }
            for m in METRICS:
                value = row.metrics.get(m) if row else None
                rec[f"paper_{m}"] = "" if value is None else value
            w.writerow(rec)


# ---- figures -------------------------------------------------------------------------
def _font(size: int = 14) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:  # Pillow >= 10.1 ships a scalable default font
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def _text_size(text: str, font: Any) -> tuple[int, int]:
    box = ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox((0, 0), text, font=font)
    return box[2] - box[0], box[3] - box[1]


def usage_panel(name: str, stats: dict[str, Any]) -> Image.Image:
    """Bars of code counts by code index for one codebook; dead codes marked grey below.

    Every code gets its own column up to 1024 codes (at least 1 px); above that, columns
    show the maximum of the codes they cover and grey when any of them is dead.
    """
    counts = [int(c) for c in stats.get("counts") or []]
    font, small = _font(14), _font(11)
    n = len(counts)
    title = (
        f"{name}: {stats.get('used', sum(c > 0 for c in counts))}/{n} codes used "
        f"({_fmt(stats.get('usage'), 1)}%), {stats.get('dead', '?')} dead, "
        f"perplexity {_fmt(stats.get('perplexity'), 1)}"
    )
    target = 512 if n <= 512 else 1024
    per_col = max(1, math.ceil(n / target))
    ncols = math.ceil(n / per_col) if n else 1
    px = max(1, target // ncols)
    left, top, bottom = 56, 26, 30
    width = max(left + ncols * px + 12, _text_size(title, font)[0] + 12)
    img = Image.new("RGB", (width, top + PLOT_HEIGHT + bottom), "white")
    d = ImageDraw.Draw(img)
    d.text((6, 4), title, fill="black", font=font)
    base = top + PLOT_HEIGHT  # y of the x axis
    colour = COLOURS.get(name, DEFAULT_COLOUR)
    peak = max(counts, default=0) or 1
    for c in range(ncols):
        chunk = counts[c * per_col : (c + 1) * per_col]
        if not chunk:
            break
        x0 = left + c * px
        h = round(PLOT_HEIGHT * max(chunk) / peak)
        h = max(h, 1) if max(chunk) > 0 else 0  # a used code never disappears
        if h:
            d.rectangle([x0, base - h, x0 + px - 1, base - 1], fill=colour)
        if min(chunk) == 0:
            d.rectangle([x0, base + 3, x0 + px - 1, base + 7], fill=DEAD_COLOUR)
    d.line([left - 1, top, left - 1, base], fill="black")
    d.line([left - 1, base, left + ncols * px, base], fill="black")
    d.text((4, top - 2), f"{max(counts, default=0):,}", fill="black", font=small)
    d.text((4, base - 12), "0", fill="black", font=small)
    d.text((left, base + 10), "0", fill="black", font=small)
    end = f"{n - 1}" if n else "-"
    d.text(
        (left + ncols * px - _text_size(end, small)[0], base + 10), end, fill="black", font=small
    )
    return img


def usage_figure(run: Run) -> Image.Image | None:
    """Header line plus one panel per codebook, side by side (global left, local right)."""
    books = (run.results or {}).get("codebooks") or {}
    names = [n for n in CODEBOOK_ORDER if n in books] + [
        n for n in books if n not in CODEBOOK_ORDER
    ]
    panels = [usage_panel(n, books[n]) for n in names if books[n].get("counts")]
    if not panels:
        return None
    font = _font(15)
    header = f"{run.dataset} · {run.label} · step {run.step} · {run.rel}"
    hw, hh = _text_size(header, font)
    width = max(sum(p.width for p in panels), hw + 12)
    img = Image.new("RGB", (width, hh + 12 + max(p.height for p in panels)), "white")
    ImageDraw.Draw(img).text((6, 4), header, fill="black", font=font)
    x = 0
    for p in panels:
        img.paste(p, (x, hh + 12))
        x += p.width
    return img


def stack(images: Sequence[Image.Image], gap: int = 6) -> Image.Image:
    """Images one under another, left-aligned, separated by a thin grey rule."""
    width = max(im.width for im in images)
    height = sum(im.height for im in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (width, height), "white")
    y = 0
    for i, im in enumerate(images):
        out.paste(im, (0, y))
        y += im.height
        if i < len(images) - 1:
            ImageDraw.Draw(out).line([0, y + gap // 2, width, y + gap // 2], fill=(200,) * 3)
            y += gap
    return out


def split_grid(path: Path) -> tuple[Image.Image, Image.Image]:
    """A training sample grid -> (inputs row, reconstructions row)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    half = im.height // 2
    return im.crop((0, 0, im.width, half)), im.crop((0, half, im.width, im.height))


def reconstruction_figure(runs: Sequence[Run]) -> Image.Image | None:
    """Figure 4: the inputs, then each run's reconstructions of them, labelled.

    Runs of one section share their inputs (the first evaluation batch of the same
    split); a run whose inputs differ gets its own inputs row above its reconstructions.
    """
    rows: list[tuple[str, Image.Image]] = []
    inputs: Image.Image | None = None
    for run in runs:
        if run.sample is None:
            continue
        try:
            top, bottom = split_grid(run.sample)
        except OSError:
            continue  # a grid being written while we read: skip it, not the report
        if inputs is None or top.size != inputs.size or top.tobytes() != inputs.tobytes():
            inputs = top
            rows.append(("inputs" if len(rows) == 0 else f"inputs of\n{run.rel}", top))
        step = re.search(r"(\d+)", run.sample.stem)
        size = f"{run.codebook_size} codes" if run.codebook_size else "?"
        text = f"{run.title}\n{size}, step {int(step.group(1)) if step else '?'}"
        text += "" if run.ok else " (unfinished)"
        rows.append((text, bottom))
    if not rows:
        return None
    font = _font(14)
    # tiny test-sized grids are enlarged (pixel-exact) so that their labels fit
    min_h = max(_text_size(t, font)[1] for t, _ in rows) + 12
    scale = max(1, math.ceil(min_h / min(im.height for _, im in rows)))
    if scale > 1:
        rows = [
            (t, im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST))
            for t, im in rows
        ]
    label_w = max(160, *(_text_size(t, font)[0] + 16 for t, _ in rows))
    width = label_w + max(im.width for _, im in rows)
    out = Image.new("RGB", (width, sum(im.height for _, im in rows)), "white")
    d = ImageDraw.Draw(out)
    y = 0
    for text, im in rows:
        th = _text_size(text, font)[1]
        d.multiline_text((8, y + max(0, (im.height - th) // 2)), text, fill="black", font=font)
        out.paste(im, (label_w, y))
        y += im.height
    return out


def draw_figures(sections: Sequence[Section], fig_dir: Path) -> dict[str, list[Path]]:
    """``{section slug: [usage figure, reconstruction figure]}`` written to ``fig_dir``."""
    written: dict[str, list[Path]] = {}
    # figures of an earlier report (a section that is gone) must not linger beside new ones
    for kind in ("usage", "reconstructions"):
        for old in fig_dir.glob(f"{kind}_*.png"):
            old.unlink()
    for section in sections:
        runs = [r for r in section.runs if r.ok]
        usage = [im for im in (usage_figure(r) for r in runs) if im is not None]
        recon = reconstruction_figure([r for r in section.runs if r.sample is not None])
        for kind, image in (("usage", stack(usage) if usage else None), ("reconstructions", recon)):
            if image is None:
                continue
            fig_dir.mkdir(parents=True, exist_ok=True)
            path = fig_dir / f"{kind}_{section.slug}.png"
            image.save(path)
            written.setdefault(section.slug, []).append(path)
    return written


# ---- entry point ---------------------------------------------------------------------
@dataclass
class Report:
    runs: list[Run]
    sections: list[Section]
    markdown: Path
    csv: Path
    figures: list[Path]


def report(
    sweep_dir: str | Path, paper: Sequence[str | Path] | None = None, table: str | None = None
) -> Report:
    """Collect ``sweep_dir`` and write ``report.md``, ``report.csv`` and ``figures/`` in it.

    ``paper``: CSV files of the paper's rows (default: ``experiments/*/paper.csv``);
    ``table``: treat every run as a row of that table (default: from the experiment).
    Raises ``FileNotFoundError`` when ``sweep_dir`` holds no job directory.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such directory")
    table = table.upper() if table else None
    runs = collect(sweep_dir, table)
    if not runs:
        raise FileNotFoundError(
            f"no job directories (with .hydra/config.yaml) under {sweep_dir}: is this the "
            "sweep dir (hydra.sweep.dir) of a multirun that has started?"
        )
    paper_files = [Path(p) for p in paper] if paper else default_paper_files()
    rows = load_paper(paper_files)
    sections = build_sections(runs, rows)
    figures = draw_figures(sections, sweep_dir / "figures")
    md = sweep_dir / "report.md"
    md.write_text(render_markdown(sweep_dir, sections, runs, paper_files, figures))
    out_csv = sweep_dir / "report.csv"
    write_csv(out_csv, runs, rows)
    return Report(runs, sections, md, out_csv, [p for ps in figures.values() for p in ps])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dcvq.report",
        description="Collect a sweep's eval.json files into the paper's tables and figures.",
    )
    parser.add_argument(
        "sweep_dir",
        type=Path,
        help="a multirun sweep dir (or any folder above"
        " job dirs); report.md, report.csv and figures/ are written there",
    )
    parser.add_argument(
        "--paper",
        action="append",
        type=Path,
        default=None,
        help="CSV of the paper's rows (tables.csv columns); repeatable; "
        "default: experiments/*/paper.csv",
    )
    parser.add_argument(
        "--table",
        choices=[*TABLE_ORDER, "s1"],
        default=None,
        help="lay every run out as a row of this table (default: from the "
        "experiment=tableX... choice of each run)",
    )
    args = parser.parse_args(argv)
    try:
        rep = report(args.sweep_dir, args.paper, args.table)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done = sum(r.ok for r in rep.runs)
    print(f"{len(rep.runs)} runs ({done} finished, {len(rep.runs) - done} missing)")
    print(f"wrote {rep.markdown}, {rep.csv} and {len(rep.figures)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
