"""The paper's tables: its rows (``experiments/*/paper.csv``), our configurations (runs
grouped over seeds) matched to them, laid out per (table, dataset) section, written as
markdown and CSV (``report.csv`` per run, ``summary.csv`` per configuration,
``paired.csv`` per paired comparison)."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcvq.report.collect import CODEBOOK_ORDER, Configuration, Run, group_runs
from dcvq.report.stats import (
    HIGHER_IS_BETTER,
    PAIRED_METRICS,
    Comparison,
    Estimate,
    Paired,
    config_gain_last_fifth,
    estimate,
    seed_estimates,
    seed_values,
)
from dcvq.report.verdicts import Verdict, render_verdicts

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


def _shown(path: Path) -> str:
    """A paper file as a reader of a committed report can find it: relative to this
    repository when it is one of its files."""
    try:
        return str(Path(path).resolve().relative_to(EXPERIMENTS_DIR.parent))
    except ValueError:
        return str(path)


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
    run: Run | None  # the configuration's representative run (lowest finished seed)
    row_label: str = ""
    config: Configuration | None = None  # every seed of the row

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
    def configs(self) -> list[Configuration]:
        """The section's configurations (rows with runs), in table order."""
        return [ln.config for ln in self.lines if ln.config is not None]

    @property
    def runs(self) -> list[Run]:
        """Every run of the section, every seed of each row."""
        out: list[Run] = []
        for ln in self.lines:
            out += ln.config.runs if ln.config else [ln.run] if ln.run else []
        return out

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
    """Group runs into configurations (:func:`~dcvq.report.collect.group_runs`: the seeds
    of one setting), those by (table, dataset), and lay each group out in the paper's row
    order; configurations that match no paper row (other sizes, other quantizers) follow,
    one line each."""
    groups: dict[tuple[str | None, str], list[Configuration]] = {}
    for config in group_runs(runs):
        groups.setdefault((config.table, config.dataset), []).append(config)
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
            found = [c for c in section_runs if c.key == row.key]
            if found:
                lines.extend(Line(row, c.representative, label, c) for c in found)
            else:
                lines.append(Line(row, None, label))
            used.update(id(c) for c in found)
        for c in section_runs:
            if id(c) not in used:
                rep = c.representative
                lines.append(Line(match(rep, paper) if table is None else None, rep, "", c))
        sections.append(Section(table, ds, lines))
    return sections


# ---- markdown ------------------------------------------------------------------------
def fmt(value: Any, digits: int) -> str:
    """``value`` to ``digits`` decimals; "—" for none, NaN or infinity."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def mean_ci(est: Estimate | None, digits: int) -> str:
    """``20.50`` for one seed, ``20.50 ± 0.12`` (95% over seeds) for several; "—" for none."""
    if est is None or est.mean is None:
        return "—"
    if est.ci95 is None:
        return fmt(est.mean, digits)
    return f"{est.mean:.{digits}f} ± {est.ci95:.{digits}f}"


def _codebook_cells(config: Configuration) -> tuple[str, str]:
    est = seed_estimates(config)
    books = [n for n in est if n.startswith("usage_")]
    cells = []
    for n in books:
        distinct = est.get("distinct_" + n[len("usage_") :])
        shown = distinct is not None and distinct.values != est[n].values  # duplicates
        cells.append(mean_ci(est[n], 1) + (f" ({mean_ci(distinct, 1)} distinct)" if shown else ""))
    usage = " / ".join(cells) or "—"
    ppl = []
    for n in books:
        book = n[len("usage_") :]
        values = [r.codebooks.get(book, {}).get("perplexity") for r in config.finished]
        ppl.append(fmt(estimate(values).mean, 1))
    return usage, " / ".join(ppl) or "—"


def _seeds_cell(config: Configuration | None) -> str:
    if config is None or not config.ok:
        return "—"
    seeds = ["?" if s is None else str(s) for s in config.seeds]
    return f"{len(seeds)} ({', '.join(seeds)})" if len(seeds) > 1 else str(len(seeds))


def _where_cell(line: Line) -> str:
    config, run = line.config, line.run
    if run is None:
        return "numbers only" if line.model in PAPER_ONLY else "not run"
    runs = config.runs if config is not None else [run]
    done = [f"`{r.rel}`" for r in runs if r.ok]
    missing = [f"`{r.rel}`" for r in runs if not r.ok]
    if not done:
        return ", ".join(missing) + " (missing: no eval.json)"
    return ", ".join(done) + (f"; {', '.join(missing)} missing" if missing else "")


def _line_cells(line: Line, roman: bool, prior: bool = False) -> list[str]:
    run, row, config = line.run, line.paper, line.config
    if config is None and run is not None:  # a Line made by hand: its run is the row
        config = Configuration([run], run.title)
    cells = [line.row_label] if roman else []
    cells += [line.model, line.global_ or "-", line.local or "-", str(line.size or "—")]
    est = seed_estimates(config) if config is not None else {}
    for m in METRICS:
        cells += [mean_ci(est.get(m), DIGITS[m])]
        cells += [fmt(row.metrics.get(m) if row else None, DIGITS[m])]
    cells += [mean_ci(est.get(m), DIGITS[m]) for m in EXTRA_METRICS]
    usage, ppl = _codebook_cells(config) if config is not None and config.ok else ("—", "—")
    cells += [usage, ppl] + ([mean_ci(est.get("prior_bits_per_token"), 3)] if prior else [])
    step = str(run.step) if run is not None and run.step is not None else "—"
    return cells + [_seeds_cell(config), step, _where_cell(line)]


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


def _signed(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


def _paired_cell(p: Paired) -> str:
    digits = DIGITS.get(p.metric, 4)
    text = f"{_signed(p.mean_diff, digits)} [{_signed(p.low, digits)}, {_signed(p.high, digits)}]"
    return text + (f" **{p.outcome}**" if p.outcome != "inconclusive" else "")


def paired_title(comps: Sequence[Comparison]) -> str:
    """``Paired comparison with VQ-GAN (same 5,000 held-out images)``."""
    refs = list(dict.fromkeys(id(c.reference) for c in comps))
    names = list(dict.fromkeys(c.reference.representative.title for c in comps))
    text = f"Paired comparison with {' / '.join(names)}"
    if len(refs) > 1 and all(c.reference.codebook_size == c.config.codebook_size for c in comps):
        text += " at the same codebook size"
    counts = sorted({c.n_images for c in comps if c.ok})
    if len(counts) == 1:
        text += f" (same {counts[0]:,} held-out images)"
    elif counts:
        text += f" (same held-out images per pair, {counts[0]:,} to {counts[-1]:,})"
    return text


def _paired_lines(
    section: Section, comps: Sequence[Comparison], reference: str | None
) -> list[str]:
    if not comps:
        if sum(c.ok for c in section.configs) < 2:
            return []
        why = (
            f"no finished row here answers to `--reference {reference}`"
            if reference
            else "no finished VQ-GAN row in this section (name a row with `--reference`)"
        )
        return ["### Paired comparison", "", f"None: {why}.", ""]
    if not any(c.ok for c in comps):  # e.g. runs from before per_image.csv: no table of —
        problems = list(dict.fromkeys(str(c.problem) for c in comps))
        return ["### Paired comparison", "", "None: " + "; ".join(problems) + ".", ""]
    metrics = [m for m in PAIRED_METRICS if any(m in c.metrics for c in comps)]
    head = ["Row", "Reference", "Seeds (row vs reference)", "Images"]
    head += [
        f"Δ{HEADERS[m]} ({'higher' if HIGHER_IS_BETTER[m] else 'lower'} is better)" for m in metrics
    ]
    out = [f"### {paired_title(comps)}", ""]
    out += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    notes = []
    for c in comps:
        cells = [c.config.label, c.reference.label]
        if c.ok:
            cells += [f"{c.n_seeds} vs {c.n_seeds_reference}", f"{c.n_images:,}"]
            cells += [_paired_cell(c.metrics[m]) if m in c.metrics else "—" for m in metrics]
        else:
            cells += ["—"] * (2 + len(metrics))
            notes.append(f"- {c.config.label}: {c.problem}")
        notes += [f"- {c.config.label}: {n}" for n in c.notes]
        out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "Δ = row − reference, image by image (each image's metric averaged over the row's"
        " seeds first); mean over the images with its 95% paired t-interval [low, high]."
        " **better** / **worse**: the interval excludes 0. The interval is over images,"
        " not over trainings: the ± over seeds above says how much a retraining moves.",
        "",
        *dict.fromkeys(notes),
    ]
    return out + ([""] if notes else [])


def _devices_note(section: Section) -> list[str]:
    """Where the section's finished runs trained, when that was not one device for all."""
    where: dict[str, list[str]] = {}
    for run in section.runs:
        if run.ok:
            where.setdefault(run.device, []).append(f"`{run.rel}`")
    if len(where) < 2:
        return []
    listed = "; ".join(f"{d}: {', '.join(rels)}" for d, rels in sorted(where.items()))
    return [
        f"Trained on several devices ({listed}). Runs that differ only in the device are"
        " seeds of one row: the device changes rounding (and the draws made on it), as a"
        " seed does.",
        "",
    ]


def render_markdown(
    sweep_dir: Path,
    sections: Sequence[Section],
    runs: Sequence[Run],
    paper_files: Sequence[Path],
    figures: dict[str, list[Path]],
    comparisons: dict[str, list[Comparison]] | None = None,
    verdicts: Sequence[Verdict] = (),
    reference: str | None = None,
) -> str:
    """report.md: one table per section (ours next to the paper's; mean ± 95% interval
    over seeds where a row has several), its figures, its paired comparisons
    (``comparisons``: section slug -> list), the runs without results, then the
    ``verdicts`` on the paper's claims."""
    done = sum(r.ok for r in runs)
    out = [
        f"# Results: `{sweep_dir}`",
        "",
        f"{len(runs)} runs, {done} finished, {len(runs) - done} missing. How to read this"
        f" report: `{GUIDE}` in the dcvq repository.",
        "",
        "Paper numbers from: " + (", ".join(f"`{_shown(p)}`" for p in paper_files) or "none"),
        "",
    ]
    for section in sections:
        roman = section.table in ("2", "3")
        head = (["Row"] if roman else []) + ["Model", "Global", "Local", "Codebook size"]
        for m in METRICS:
            head += [HEADERS[m], f"{HEADERS[m]} paper"]
        head += [HEADERS[m] for m in EXTRA_METRICS]
        head += ["Usage %", "Perplexity"]
        prior = any("prior_bits_per_token" in seed_values(c) for c in section.configs)
        head += ["Prior bits/token"] if prior else []
        head += ["Seeds", "Step", "Run"]
        out += [f"## {section.title}", "", _protocol_text(section), ""]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        rows = [_line_cells(ln, roman, prior) for ln in section.lines]
        out += ["| " + " | ".join(cells) + " |" for cells in rows]
        out.append("")
        if any(len(c.finished) > 1 for c in section.configs):
            out += ["a ± b: mean over the row's seeds ± half-width of its 95% t-interval.", ""]
        if any(" distinct)" in cell for cells in rows for cell in cells):
            out += [
                "Usage % (x distinct): percent of codes used, and of codes used that are"
                " distinct vectors (a collapsed codebook is one vector many times over:"
                " `dcvq/metrics/usage.py`).",
                "",
            ]
        out += _devices_note(section)
        for fig in figures.get(section.slug, []):
            out += [f"![{fig.stem}](figures/{fig.name})", ""]
        if comparisons is not None:
            out += _paired_lines(section, comparisons.get(section.slug, []), reference)
    missing = [r for r in runs if not r.ok]
    out += ["## Missing runs", ""]
    if missing:
        out += [f"- `{r.rel}` ({r.dataset}, {r.label}): {r.problem}" for r in missing]
    else:
        out.append("None: every run has its eval.json.")
    out.append("")
    if verdicts:
        out += render_verdicts(verdicts)
    return "\n".join(out)


# ---- CSV -----------------------------------------------------------------------------
def _row_fields(run: Run) -> dict[str, Any]:
    """What names a run's row in the CSV files (field order is the writer's)."""
    return {
        "table": run.table or "",
        "dataset": run.dataset,
        "model": run.model,
        "global": run.global_,
        "local": run.local,
        "codebook_size": run.codebook_size or "",
    }


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
        fields += [f"usage_{n}", f"distinct_{n}", f"dead_{n}", f"perplexity_{n}"]
    fields += [f"paper_{m}" for m in METRICS]
    fields += ["protocol", "split", "n_images", "step", "device", "run"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for run in runs:
            res = run.results or {}
            row = match(run, paper)
            rec: dict[str, Any] = _row_fields(run) | {
                "status": "ok" if run.ok else "missing",
                "protocol": res.get("protocol", ""),
                "split": res.get("split", ""),
                "n_images": res.get("n_images", ""),
                "step": run.step if run.step is not None else "",
                "device": run.device,
                "run": run.rel,
            }
            for m in (*METRICS, *EXTRA_METRICS):
                rec[m] = "" if res.get(m) is None else res[m]
            for n, cb in run.codebooks.items():
                rec |= {
                    f"usage_{n}": cb.get("usage"),
                    f"distinct_{n}": cb.get("distinct_usage", ""),
                    f"dead_{n}": cb.get("dead"),
                    f"perplexity_{n}": cb.get("perplexity"),
                }
            for m in METRICS:
                value = row.metrics.get(m) if row else None
                rec[f"paper_{m}"] = "" if value is None else value
            w.writerow(rec)


def _cell_value(value: float | None) -> Any:
    return "" if value is None else value


def write_summary(path: Path, sections: Sequence[Section]) -> None:
    """summary.csv: one row per configuration: its labels, seeds, and for each metric the
    mean over seeds and the half-width of its 95% t-interval (empty for one seed)."""
    configs = [c for s in sections for c in s.configs]
    values = [seed_values(c) for c in configs]
    measured = ["psnr", "l1", "l2", "ssim"]
    measured += [m for m in ("lpips", "fid") if any(m in v for v in values)]
    books = [f"usage_{n}" for n in CODEBOOK_ORDER]
    books += [k for v in values for k in v if k.startswith(("usage_", "distinct_"))]
    prior = list(dict.fromkeys(k for v in values for k in v if k.startswith("prior_")))
    metrics = measured + list(dict.fromkeys(books)) + ["psnr_gain_last_fifth"] + prior
    fields = [
        "table",
        "dataset",
        "label",
        "model",
        "global",
        "local",
        "codebook_size",
        "quantizer",
        "baseline",
        "n_seeds",
        "seeds",
        "n_missing",
        "protocol",
        "split",
        "n_images",
        "step",
    ]
    fields += [f"{m}_{k}" for m in metrics for k in ("mean", "ci95")] + ["runs"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for config, vals in zip(configs, values, strict=True):
            rep = config.representative
            res = rep.results or {}
            rec: dict[str, Any] = _row_fields(rep) | {
                "label": config.label,
                "quantizer": rep.quantizer,
                "baseline": rep.baseline,
                "n_seeds": len(config.finished),
                "seeds": " ".join("" if s is None else str(s) for s in config.seeds),
                "n_missing": len(config.runs) - len(config.finished),
                "protocol": res.get("protocol", ""),
                "split": res.get("split", ""),
                "n_images": res.get("n_images", ""),
                "step": rep.step if rep.step is not None else "",
                "runs": " ".join(r.rel for r in config.runs),
            }
            ests = {m: estimate(v) for m, v in vals.items()}
            ests["psnr_gain_last_fifth"] = config_gain_last_fifth(config)
            for m in metrics:
                est = ests.get(m)
                rec[f"{m}_mean"] = _cell_value(est.mean if est else None)
                rec[f"{m}_ci95"] = _cell_value(est.ci95 if est else None)
            w.writerow(rec)


#: paired.csv's columns, one row per (comparison, metric)
PAIRED_FIELDS = (
    "table",
    "dataset",
    "split",
    "row",
    "row_quantizer",
    "row_codebook_size",
    "reference",
    "reference_quantizer",
    "reference_codebook_size",
    "metric",
    "better",
    "n_images",
    "n_seeds",
    "n_seeds_reference",
    "row_mean",
    "reference_mean",
    "mean_diff",
    "ci95_low",
    "ci95_high",
    "outcome",
    "note",
)


def write_paired(path: Path, comparisons: Sequence[Comparison]) -> None:
    """paired.csv: each paired comparison, one line per metric (``mean_diff`` = row −
    reference; ``better``: which direction is better; ``outcome``: better / worse /
    inconclusive from the 95% interval); a comparison without numbers gets one line with
    its reason in ``note``."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=PAIRED_FIELDS, lineterminator="\n")
        w.writeheader()
        for c in comparisons:
            a, b = c.config.representative, c.reference.representative
            base = {
                "table": a.table or "",
                "dataset": a.dataset,
                "split": c.config.split or "",
                "row": c.config.label,
                "row_quantizer": a.baseline or a.quantizer,
                "row_codebook_size": a.codebook_size or "",
                "reference": c.reference.label,
                "reference_quantizer": b.baseline or b.quantizer,
                "reference_codebook_size": b.codebook_size or "",
                "n_images": c.n_images,
                "n_seeds": c.n_seeds,
                "n_seeds_reference": c.n_seeds_reference,
                "note": "; ".join([*c.notes, *([c.problem] if c.problem else [])]),
            }
            if not c.ok:
                w.writerow(base)
            for m, p in c.metrics.items():
                w.writerow(
                    base
                    | {
                        "metric": m,
                        "better": "higher" if p.higher_is_better else "lower",
                        "row_mean": p.config_mean,
                        "reference_mean": p.reference_mean,
                        "mean_diff": p.mean_diff,
                        "ci95_low": _cell_value(p.low),
                        "ci95_high": _cell_value(p.high),
                        "outcome": p.outcome,
                    }
                )
