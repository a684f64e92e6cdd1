"""The paper's tables: its rows (``experiments/*/paper.csv``), our runs matched to them,
laid out per (table, dataset) section, written as markdown and CSV."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcvq.report.collect import CODEBOOK_ORDER, Run

#: the repository (dcvq is installed editable from it): holds experiments/<table>/paper.csv
REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = REPO / "experiments"
#: where the report's notes are explained at length (named, not linked: report.md lives in
#: the sweep dir, so a relative link would not resolve)
GUIDE = "experiments/README.md"

TABLE_ORDER = ("1", "2", "3", "S1")
METRICS = ("fid", "psnr", "l1", "l2")
EXTRA_METRICS = ("ssim", "lpips")
DIGITS = {"fid": 2, "psnr": 2, "l1": 4, "l2": 4, "ssim": 4, "lpips": 4}
HEADERS = {"fid": "FID", "psnr": "PSNR", "l1": "L1", "l2": "L2", "ssim": "SSIM", "lpips": "LPIPS"}
#: rows the paper copies from elsewhere and that dcvq does not train (VQCT needs a
#: pretrained language codebook)
PAPER_ONLY = ("VQCT",)


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


def match(run: Run, paper: Sequence[PaperRow]) -> PaperRow | None:
    """The paper's row for ``run``: same table (when known), dataset, model, halves, size."""
    for row in paper:
        if row.key == run.key and (run.table is None or row.table == run.table):
            return row
    return None


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
    """The lines of one (table, dataset) pair: a heading of report.md, one set of figures."""

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
    """Group runs by (table, dataset) and lay each group out in the paper's row order;
    runs that match no paper row (other sizes, other quantizers) follow, one line each."""
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


# ---- markdown ------------------------------------------------------------------------
def fmt(value: Any, digits: int) -> str:
    """``value`` to ``digits`` decimals; "—" for none, NaN or infinity."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def _codebook_cells(run: Run) -> tuple[str, str]:
    books = run.codebooks
    usage = " / ".join(fmt(b.get("usage"), 1) for b in books.values()) or "—"
    ppl = " / ".join(fmt(b.get("perplexity"), 1) for b in books.values()) or "—"
    return usage, ppl


def _line_cells(line: Line, roman: bool) -> list[str]:
    run, row = line.run, line.paper
    cells = [line.row_label] if roman else []
    cells += [line.model, line.global_ or "-", line.local or "-", str(line.size or "—")]
    res = run.results if run is not None and run.ok else {}
    for m in METRICS:
        cells += [fmt(res.get(m), DIGITS[m]), fmt(row.metrics.get(m) if row else None, DIGITS[m])]
    cells += [fmt(res.get(m), DIGITS[m]) for m in EXTRA_METRICS]
    usage, ppl = _codebook_cells(run) if run is not None and run.ok else ("—", "—")
    if run is None:
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
        f" **Paper L1/L2 scale**: {names}: e.g. {r.dataset} {r.model}: PSNR"
        f" {r.metrics['psnr']:.2f} dB, L2 {r.metrics['l2']:.4f} implies at least"
        f" {psnr_bound_on_vqct_scale(r.metrics['l2']):.1f} dB on [-1, 1]; compare by PSNR"
        f" and FID (`{GUIDE}`)."
    )


def _protocol_text(section: Section) -> str:
    seen = []
    for run in section.runs:
        if run.ok:
            r = run.results or {}
            n = r.get("n_images")
            text = f"protocol `{r.get('protocol')}` on split `{r.get('split')}`"
            text += f" ({n:,} images)" if isinstance(n, int) else ""
            if text not in seen:
                seen.append(text)
    out = f"Ours: {'; '.join(seen) if seen else 'no finished runs yet'}."
    protocols = {(run.results or {}).get("protocol") for run in section.runs if run.ok}
    if protocols - {"vqct"}:
        out += (
            " **Not the paper's protocol** (`vqct`): not comparable with the paper's"
            f" numbers (`{GUIDE}`)."
        )
    if section.table in ("2", "3"):
        if any(ln.paper for ln in section.lines):
            out += f" Paper: its Table {section.table}, protocol not stated."
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
    """report.md: one table per section (ours next to the paper's), its figures, and the
    runs without results."""
    done = sum(r.ok for r in runs)
    out = [
        f"# Results: `{sweep_dir}`",
        "",
        f"{len(runs)} runs, {done} finished, {len(runs) - done} missing. How to read this"
        f" report: `{GUIDE}` in the dcvq repository.",
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


# ---- CSV -----------------------------------------------------------------------------
def write_csv(path: Path, runs: Sequence[Run], paper: Sequence[PaperRow]) -> None:
    """report.csv: one row per run (finished or not), with the paper's numbers beside."""
    books = list(CODEBOOK_ORDER)
    for run in runs:
        books += [n for n in run.codebooks if n not in books]
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
            for n, cb in run.codebooks.items():
                rec |= {
                    f"usage_{n}": cb.get("usage"),
                    f"dead_{n}": cb.get("dead"),
                    f"perplexity_{n}": cb.get("perplexity"),
                }
            for m in METRICS:
                value = row.metrics.get(m) if row else None
                rec[f"paper_{m}"] = "" if value is None else value
            w.writerow(rec)
