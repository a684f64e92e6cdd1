"""``python -m dcvq.report SWEEP_DIR [--paper CSV ...] [--table 1|2|3|S1]``: collect a
sweep, write ``report.md``, ``report.csv`` and ``figures/`` into it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dcvq.report.collect import Run, collect
from dcvq.report.figures import draw_figures
from dcvq.report.tables import (
    TABLE_ORDER,
    Section,
    build_sections,
    default_paper_files,
    load_paper,
    render_markdown,
    write_csv,
)


@dataclass
class Report:
    """What :func:`report` read and wrote."""

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
    """The command line; returns the exit status (2: no such sweep)."""
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
