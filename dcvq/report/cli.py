"""``python -m dcvq.report SWEEP_DIR [--paper CSV ...] [--table 1|2|3|S1] [--reference ROW]``:
collect a sweep, write ``report.md``, ``report.csv`` (per run), ``summary.csv`` (per
configuration, over seeds), ``paired.csv`` (paired comparisons) and ``figures/`` into it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dcvq.report.collect import Run, collect
from dcvq.report.figures import draw_figures
from dcvq.report.stats import Comparison, comparisons
from dcvq.report.tables import (
    TABLE_ORDER,
    Section,
    build_sections,
    default_paper_files,
    load_paper,
    render_markdown,
    write_csv,
    write_paired,
    write_summary,
)
from dcvq.report.verdicts import Verdict, judge_claims


@dataclass
class Report:
    """What :func:`report` read and wrote."""

    runs: list[Run]
    sections: list[Section]
    markdown: Path
    csv: Path
    figures: list[Path]
    summary: Path | None = None
    paired: Path | None = None
    comparisons: list[Comparison] | None = None
    verdicts: list[Verdict] | None = None


def report(
    sweep_dir: str | Path,
    paper: Sequence[str | Path] | None = None,
    table: str | None = None,
    reference: str | None = None,
    out: str | Path | None = None,
) -> Report:
    """Collect ``sweep_dir`` and write ``report.md``, ``report.csv``, ``summary.csv``,
    ``paired.csv`` and ``figures/`` in ``out`` (default: the sweep dir itself; e.g. a
    folder under ``experiments/`` to commit the results without the runs' checkpoints).

    ``paper``: CSV files of the paper's rows (default: ``experiments/*/paper.csv``);
    ``table``: treat every run as a row of that table (default: from the experiment);
    ``reference``: the row every other is compared with image by image (a row label such
    as ``VQ-GAN, 512 codes`` or a quantizer option such as ``s128_s128``; default VQ-GAN).
    Raises ``FileNotFoundError`` when ``sweep_dir`` holds no job directory and
    ``ValueError`` when no row answers to ``reference``.
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
    if reference is not None and not any(
        reference.lower() in c.names() for s in sections for c in s.configs
    ):
        labels = ", ".join(sorted({c.label for s in sections for c in s.configs}))
        raise ValueError(
            f"--reference {reference!r}: no row of {sweep_dir} answers to it; give a row"
            f" label ({labels}) or a quantizer option (e.g. vq)"
        )
    compared = {s.slug: comparisons(s.configs, reference) for s in sections}
    judged = judge_claims([s.configs for s in sections])
    out = Path(out) if out is not None else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    figures = draw_figures(sections, out / "figures")
    md = out / "report.md"
    md.write_text(
        render_markdown(
            sweep_dir, sections, runs, paper_files, figures, compared, judged, reference
        )
    )
    out_csv = out / "report.csv"
    write_csv(out_csv, runs, rows)
    summary, paired = out / "summary.csv", out / "paired.csv"
    write_summary(summary, sections)
    flat = [c for cs in compared.values() for c in cs]
    write_paired(paired, flat)
    figs = [p for ps in figures.values() for p in ps]
    return Report(runs, sections, md, out_csv, figs, summary, paired, flat, judged)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (2: no such sweep, or no row answers to
    ``--reference``)."""
    parser = argparse.ArgumentParser(
        prog="python -m dcvq.report",
        description="Collect a sweep's eval.json files into the paper's tables and figures.",
    )
    parser.add_argument(
        "sweep_dir",
        type=Path,
        help="a multirun sweep dir (or any folder above job dirs); report.md, report.csv,"
        " summary.csv, paired.csv and figures/ are written there unless --out says",
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
    parser.add_argument(
        "--reference",
        default=None,
        metavar="ROW",
        help="the row the paired comparisons compare every other with: a row label "
        "(e.g. 'VQ-GAN, 512 codes') or a quantizer option (e.g. s128_s128); default: "
        "VQ-GAN (vq at the same codebook size when there are several)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the report there instead of into the sweep dir",
    )
    args = parser.parse_args(argv)
    try:
        rep = report(args.sweep_dir, args.paper, args.table, args.reference, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done = sum(r.ok for r in rep.runs)
    print(f"{len(rep.runs)} runs ({done} finished, {len(rep.runs) - done} missing)")
    print(
        f"wrote {rep.markdown}, {rep.csv}, {rep.summary}, {rep.paired} and"
        f" {len(rep.figures)} figures"
    )
    return 0
