"""report.md: per section, our rows next to the paper's (mean ± 95% interval over seeds),
how each row's selected setting was chosen, the figures, the paired comparisons (over
images, source photos and seeds) with their per-photo differences and budget checks; then
the runs that are not a row's seeds, duplicates, missing runs and the verdicts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dcvq.report.budget import budget_check
from dcvq.report.cluster import METHOD as CLUSTER_METHOD
from dcvq.report.collect import Run
from dcvq.report.paper import GUIDE, METRICS, PAPER_ONLY, off_scale, psnr_bound_on_vqct_scale
from dcvq.report.paper import shown_path as _shown
from dcvq.report.rate import config_bits
from dcvq.report.rows import Configuration, show, show_values, steps_text
from dcvq.report.sections import Line, Section
from dcvq.report.stats import (
    DIGITS,
    HIGHER_IS_BETTER,
    NAMES,
    PAIRED_METRICS,
    Comparison,
    Estimate,
    estimate,
    seed_estimates,
    seed_values,
)
from dcvq.report.verdicts import RECONSTRUCTION, Verdict, render_verdicts, split_statement

EXTRA_METRICS = ("ssim", "lpips")
HEADERS = NAMES
#: a comparison's per-photo differences are tabulated in report.md up to this many photos
#: (all of them are in per_photo.csv)
MAX_SOURCES_SHOWN = 12
#: fewer source photos than this: the photo interval is coarse, and the report says so
FEW_SOURCES = 5


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


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return out + ["| " + " | ".join(cells) + " |" for cells in rows]


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
        values = [
            r.codebooks_on(config.judged).get(book, {}).get("perplexity") for r in config.finished
        ]
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


def _bits_cell(config: Configuration | None) -> str:
    bits = config_bits(config) if config is not None else None
    return f"{bits:,.0f}" if bits is not None else "—"


def _line_cells(
    line: Line, roman: bool, prior: bool = False, keys: Sequence[str] = ()
) -> list[str]:
    run, row, config = line.run, line.paper, line.config
    if config is None and run is not None:  # a Line made by hand: its run is the row
        config = Configuration([run], run.paper_name)
    cells = [line.row_label] if roman else []
    cells += [line.model, line.global_ or "-", line.local or "-", str(line.size or "—")]
    cells += [show(config.selected.get(k)) if config else "—" for k in keys]
    cells += [_bits_cell(config)]
    est = seed_estimates(config) if config is not None else {}
    for m in METRICS:
        cells += [mean_ci(est.get(m), DIGITS[m])]
        cells += [fmt(row.metrics.get(m) if row else None, DIGITS[m])]
    cells += [mean_ci(est.get(m), DIGITS[m]) for m in EXTRA_METRICS]
    usage, ppl = _codebook_cells(config) if config is not None and config.ok else ("—", "—")
    cells += [usage, ppl] + ([mean_ci(est.get("prior_bits_per_token"), 3)] if prior else [])
    step = str(run.step) if run is not None and run.step is not None else "—"
    device = config.device_text if config is not None and config.ok else "—"
    return cells + [_seeds_cell(config), step, device, _where_cell(line)]


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
    for c in section.configs:
        for run in c.finished:
            r = run.results_on(c.judged) or {}
            n = r.get("n_images")
            text = f"protocol `{r.get('protocol', (run.results or {}).get('protocol'))}`"
            text += f" on split `{r.get('split')}`" + (
                f" ({n:,} images)" if isinstance(n, int) else ""
            )
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


def _interval(low: float | None, high: float | None, digits: int) -> str:
    return "—" if low is None else f"[{_signed(low, digits)}, {_signed(high, digits)}]"


def _paired_cell(c: Comparison, m: str) -> str:
    """``+1.02 [+0.95, +1.09] · photos [+0.6, +1.4] · seeds [+0.5, +1.5]: better``."""
    p, cl, s = c.metrics[m], c.cluster.get(m), c.seeds.get(m)
    d = DIGITS.get(m, 4)
    photos = _interval(cl.low, cl.high, d) if cl is not None else "—"
    seeds = _interval(s.low, s.high, d) if s is not None and s.low is not None else "— (1 seed)"
    return (
        f"{_signed(p.mean_diff, d)} {_interval(p.low, p.high, d)} · photos {photos}"
        f" · seeds {seeds}: {c.outcome(m)}"
    )


def paired_title(comps: Sequence[Comparison]) -> str:
    """``Paired comparison with VQ-GAN (same 5,000 held-out images)``."""
    refs = list(dict.fromkeys(id(c.reference) for c in comps))
    names = list(dict.fromkeys(c.reference.representative.paper_name for c in comps))
    text = f"Paired comparison with {' / '.join(names)}"
    if len(refs) > 1 and all(c.reference.codebook_size == c.config.codebook_size for c in comps):
        text += " at the same codebook size"
    counts = sorted({c.n_images for c in comps if c.ok})
    if len(counts) == 1:
        text += f" (same {counts[0]:,} held-out images)"
    elif counts:
        text += f" (same held-out images per pair, {counts[0]:,} to {counts[-1]:,})"
    return text


def _per_source_lines(comps: Sequence[Comparison]) -> list[str]:
    """A small table per comparison: each source photo's mean difference."""
    out = []
    for c in comps:
        if not c.ok or not c.per_source or c.n_sources > MAX_SOURCES_SHOWN:
            continue
        metrics = [m for m in PAIRED_METRICS if m in c.per_source]
        first = c.per_source[metrics[0]]
        rows = []
        for i, src in enumerate(first):
            cells = [f"`{src.source}`", f"{src.n_images:,}"]
            for m in metrics:
                value = c.per_source[m][i].mean_diff if i < len(c.per_source[m]) else None
                cells.append(_signed(value, DIGITS.get(m, 4)))
            rows.append(cells)
        head = ["Source photo", "Images", *(f"Δ{HEADERS[m]}" for m in metrics)]
        out += [f"{c.config.label} − {c.reference.label}:", "", *_table(head, rows), ""]
    if out:
        out = ["#### Per source photo", "", *out]
    return out


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
    head = ["Row", "Reference", "Seeds (row vs reference)", "Images (photos)"]
    head += [
        f"Δ{HEADERS[m]} ({'higher' if HIGHER_IS_BETTER[m] else 'lower'} is better)" for m in metrics
    ]
    rows, notes = [], []
    for c in comps:
        cells = [c.config.label, c.reference.label]
        if c.ok:
            cells += [f"{c.n_seeds} vs {c.n_seeds_reference}", f"{c.n_images:,} ({c.n_sources:,})"]
            cells += [_paired_cell(c, m) if m in c.metrics else "—" for m in metrics]
        else:
            cells += ["—"] * (2 + len(metrics))
            notes.append(f"- {c.config.label}: {c.problem}")
        if c.device_flag:
            notes.append(
                f"- {c.config.label}: **trained on different devices** from its reference"
                f" ({c.device_flag}): the difference includes the device's"
            )
        notes += [f"- {c.config.label}: {n}" for n in c.notes]
        if c.ok and 1 < c.n_sources < FEW_SOURCES:
            notes.append(
                f"- {c.config.label}: only {c.n_sources} source photos: the interval over"
                " photos cannot be wider than the range of their means, and says little"
                " about other photos"
            )
        rows.append(cells)
    out = [f"### {paired_title(comps)}", "", *_table(head, rows)]
    out += [
        "",
        "Δ = row − reference, image by image (each image's metric averaged over the row's"
        " seeds first), mean over the images with three 95% intervals: over images (paired"
        f" t, treating tiles as independent), over source photos ({CLUSTER_METHOD}) and over"
        " seeds (Welch, from each seed's mean). better / worse: the photo and the seed"
        " interval both exclude 0 on that side.",
        "",
        *dict.fromkeys(notes),
    ]
    out += [""] if notes else []
    return out + _per_source_lines(comps) + _budget_lines(comps)


def _budget_lines(comps: Sequence[Comparison]) -> list[str]:
    """Each comparison's budget check: its difference at twice the budget."""
    rows = []
    for c in comps:
        if not c.ok or not (c.config.budget_runs or c.reference.budget_runs):
            continue
        check = budget_check(c.config, c.reference, RECONSTRUCTION)
        rows.append([c.config.label, c.reference.label, check.describe()])
    if not rows:
        return []
    return [
        "#### Budget check",
        "",
        *_table(["Row", "Reference", "At twice the budget (one seed per row suffices)"], rows),
        "",
        "kept: each difference has the same sign at twice `trainer.max_steps` (mean over the"
        " rows' runs there) as at the rows' budget; flipped: some has not, and the rows were"
        " not trained out.",
        "",
    ]


def _selection_lines(section: Section) -> list[str]:
    rows = [c for c in section.configs if c.selection is not None]
    if not rows:
        return []
    out = ["### Selected settings", ""]
    for c in rows:
        sel = c.selection
        assert sel is not None
        chosen = show_values(sel.keys, sel.chosen) if sel.chosen is not None else "—"
        out.append(f"- {c.label}: {chosen}, chosen by {sel.describe()}.")
        if sel.mismatch:
            out.append(f"  - **Not at the selected value**: {sel.mismatch}.")
    out += [
        "",
        "Chosen on the validation split, one value per row: the numbers above are the"
        " row's runs at that value (on the test split where there is one). Runs at the"
        " other values are listed under *Runs that are not a row's seeds*.",
        "",
    ]
    return out


def _devices_note(section: Section) -> list[str]:
    """Where the section's finished runs trained, when that was not one device for all."""
    where: dict[str, list[str]] = {}
    for run in section.runs:
        if run.ok:
            kind = f"{run.device_type} · torch {run.torch_version or '?'}"
            where.setdefault(kind, []).append(f"`{run.rel}`")
    if len(where) < 2:
        return []
    listed = "; ".join(f"{d}: {', '.join(rels)}" for d, rels in sorted(where.items()))
    pooled = [c.label for c in section.configs if c.pooled and len(c.devices) > 1]
    if pooled:
        text = (
            f"**Pooled across devices** (`--pool-devices`): {', '.join(pooled)} count runs"
            " of different device types or torch versions as seeds of one row."
        )
    else:
        text = "Rows are split by device type and torch version (`--pool-devices` would pool them)."
    return [f"Trained on several devices ({listed}). {text}", ""]


def render_markdown(
    sweep_dirs: Sequence[Path],
    sections: Sequence[Section],
    runs: Sequence[Run],
    paper_files: Sequence[Path],
    figures: dict[str, list[Path]],
    comparisons: dict[str, list[Comparison]] | None = None,
    verdicts: Sequence[Verdict] = (),
    reference: str | None = None,
    select: Sequence[str] = (),
) -> str:
    """report.md: one table per section (ours next to the paper's; mean ± 95% interval
    over seeds where a row has several), its selected settings, figures and paired
    comparisons (``comparisons``: section slug -> list), the runs that are not a row's
    seeds, duplicates and runs without results, then the ``verdicts``."""
    configs = [c for s in sections for c in s.configs]
    duplicates = [d for c in configs for d in c.duplicates]
    done = sum(r.ok for r in runs)
    where = ", ".join(f"`{d}`" for d in sweep_dirs)
    out = [
        f"# Results: {where}",
        "",
        f"{len(runs)} runs, {done} finished, {len(runs) - done} missing"
        + (f", {len(duplicates)} duplicates set aside" if duplicates else "")
        + f". How to read this report: `{GUIDE}` in the dcvq repository.",
        "",
        split_statement(configs),
        "",
        "Paper numbers from: " + (", ".join(f"`{_shown(p)}`" for p in paper_files) or "none"),
        "",
    ]
    if select:
        out += [
            f"Selected per row on validation PSNR: {', '.join(f'`{k}`' for k in select)}"
            " (`--select`).",
            "",
        ]
    for section in sections:
        roman = section.table in ("2", "3")
        keys = list(select)
        head = (["Row"] if roman else []) + ["Model", "Global", "Local", "Codebook size"]
        head += keys + ["Bits/image"]
        for m in METRICS:
            head += [HEADERS[m], f"{HEADERS[m]} paper"]
        head += [HEADERS[m] for m in EXTRA_METRICS]
        head += ["Usage %", "Perplexity"]
        prior = any("prior_bits_per_token" in seed_values(c) for c in section.configs)
        head += ["Prior bits/token"] if prior else []
        head += ["Seeds", "Step", "Device", "Run"]
        out += [f"## {section.title}", "", _protocol_text(section), ""]
        rows = [_line_cells(ln, roman, prior, keys) for ln in section.lines]
        out += [*_table(head, rows), ""]
        if any(len(c.finished) > 1 for c in section.configs):
            out += ["a ± b: mean over the row's seeds ± half-width of its 95% t-interval.", ""]
        out += [
            "Bits/image: token positions x the sum over codebooks of log2(codes); equal"
            " bits are equal rate.",
            "",
        ]
        if any(" distinct)" in cell for cells in rows for cell in cells):
            out += [
                "Usage % (x distinct): percent of codes used, and of codes used that are"
                " distinct vectors (a collapsed codebook is one vector many times over:"
                " `dcvq/metrics/usage.py`).",
                "",
            ]
        out += _devices_note(section)
        out += _selection_lines(section)
        for fig in figures.get(section.slug, []):
            out += [f"![{fig.stem}](figures/{fig.name})", ""]
        if comparisons is not None:
            out += _paired_lines(section, comparisons.get(section.slug, []), reference)
    out += _other_runs_lines(configs)
    if duplicates:
        out += ["## Duplicates", ""]
        out += [
            f"- `{dup.rel}`: the same configuration and seed as `{kept.rel}`"
            f" ({'older eval.json' if dup.ok else 'unfinished'}): set aside, counted once"
            for dup, kept in duplicates
        ]
        out.append("")
    missing = [r for c in configs for r in c.runs if not r.ok]
    out += ["## Missing runs", ""]
    if missing:
        out += [f"- `{r.rel}` ({r.dataset}, {r.paper_name_sized}): {r.problem}" for r in missing]
    else:
        out.append("None: every row's run has its eval.json.")
    out.append("")
    if verdicts:
        out += render_verdicts(verdicts, configs)
    return "\n".join(out)


def _other_runs_lines(configs: Sequence[Configuration]) -> list[str]:
    """The runs of each configuration that are not the row's seeds: selection runs, runs
    at values not selected, budget checks, other budgets. Listed, never dropped."""
    out = []
    for c in configs:
        for r in c.budget_runs:
            state = "" if r.ok else f" — missing: {r.problem}"
            out.append(f"- `{r.rel}` ({c.label}): budget check ({steps_text(r.max_steps)}){state}")
        for r, why in c.others:
            psnr = (r.results or {}).get("psnr")
            val = f", val PSNR {psnr:.2f}" if isinstance(psnr, int | float) else ""
            collapsed = f", collapsed ({', '.join(r.collapsed)})" if r.collapsed else ""
            state = "" if r.ok else f" — missing: {r.problem}"
            out.append(f"- `{r.rel}` ({c.label}): {why}{val}{collapsed}{state}")
    if not out:
        return []
    return ["## Runs that are not a row's seeds", "", *out, ""]
