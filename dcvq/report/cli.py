"""``python -m dcvq.report SWEEP_DIR [SWEEP_DIR ...] [--select KEY] [--pool-devices]
[--wandb] ...``: collect one or more sweeps, write ``report.md``, ``report.csv`` (per run),
``summary.csv`` (per configuration, over seeds), ``paired.csv`` (paired comparisons),
``per_photo.csv`` (their differences per source photo) and ``figures/``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dcvq.config.diff import RESULT_NEUTRAL, under
from dcvq.report.collect import Run, collect_sweeps
from dcvq.report.csvfiles import write_csv, write_paired, write_per_photo, write_summary
from dcvq.report.figures import draw_figures
from dcvq.report.markdown import render_markdown
from dcvq.report.paper import default_paper_files, load_paper
from dcvq.report.rows import BUDGET_KEY, group_runs
from dcvq.report.sections import TABLE_ORDER, Section, build_sections
from dcvq.report.stats import Comparison, comparisons
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
    per_photo: Path | None = None
    warnings: list[str] | None = None  # said loudly: selections not at the chosen value
    wandb_dir: Path | None = None  # the wandb run's files (--wandb)


def _check_select(keys: Sequence[str], runs: Sequence[Run]) -> None:
    for key in keys:
        if key == "seed" or key == BUDGET_KEY or under(key, RESULT_NEUTRAL):
            raise ValueError(
                f"--select {key}: seeds, the budget and keys that cannot change results"
                " are never selected; give a setting such as trainer.lr"
            )
        if all(r.setting(key) is None for r in runs):
            raise ValueError(
                f"--select {key}: no run's config has this key; give a dotted key of the"
                " runs' .hydra/config.yaml, such as trainer.lr"
            )


def report(
    sweep_dir: str | Path | Sequence[str | Path],
    paper: Sequence[str | Path] | None = None,
    table: str | None = None,
    reference: str | None = None,
    out: str | Path | None = None,
    select: Sequence[str] = (),
    pool_devices: bool = False,
    steps: int | None = None,
    wandb: bool = False,
    wandb_group: str | None = None,
    wandb_project: str | None = None,
    draw: bool = True,
) -> Report:
    """Collect ``sweep_dir`` (one or several: e.g. a selection sweep and a final one) and
    write ``report.md``, ``report.csv``, ``summary.csv``, ``paired.csv``, ``per_photo.csv``
    and ``figures/`` in ``out`` (default: the sweep dir itself; e.g. a folder under
    ``experiments/`` to commit the results without the runs' checkpoints).

    ``paper``: CSV files of the paper's rows (default: ``experiments/*/paper.csv``);
    ``table``: treat every run as a row of that table (default: from the experiment);
    ``reference``: the row every other is compared with image by image (a row label such
    as ``VQ-GAN, 512 codes`` or a quantizer option such as ``s128_s128``; default VQ-GAN);
    ``select``: dotted config keys chosen per row on validation PSNR
    (:mod:`dcvq.report.rows`); ``pool_devices``: count runs of different device types or
    torch versions as seeds of one row; ``steps``: the budget (``trainer.max_steps``) the
    rows report (default: the one with the most seeds at one setting); ``wandb``: also log
    the report as a wandb run in the sweep's group (``wandb_group``, ``wandb_project``
    override it); ``draw=False`` leaves the figures out (tables only: the fast path
    tests take). Raises ``FileNotFoundError`` when a sweep dir holds no job directory
    and ``ValueError`` for an option no run answers to.
    """
    dirs = [Path(sweep_dir)] if isinstance(sweep_dir, str | Path) else [Path(d) for d in sweep_dir]
    for d in dirs:
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: no such directory")
    if len(dirs) > 1 and out is None:
        raise ValueError(
            f"{len(dirs)} sweep dirs: name the folder to write the report to with --out DIR"
        )
    if steps is not None and steps <= 0:
        raise ValueError(f"--steps {steps}: a budget is a positive number of steps")
    table = table.upper() if table else None
    runs = collect_sweeps(dirs, table)
    if not runs:
        raise FileNotFoundError(
            f"no job directories (with .hydra/config.yaml) under {', '.join(map(str, dirs))}:"
            " is this the sweep dir (hydra.sweep.dir) of a multirun that has started?"
        )
    _check_select(select, runs)
    paper_files = [Path(p) for p in paper] if paper else default_paper_files()
    rows = load_paper(paper_files)
    configs = group_runs(runs, select, pool_devices, steps)
    sections = build_sections(configs, rows)
    if reference is not None and not any(
        reference.lower() in c.names() for s in sections for c in s.configs
    ):
        labels = ", ".join(sorted({c.label for s in sections for c in s.configs}))
        raise ValueError(
            f"--reference {reference!r}: no row of {', '.join(map(str, dirs))} answers to"
            f" it; give a row label ({labels}) or a quantizer option (e.g. vq)"
        )
    compared = {s.slug: comparisons(s.configs, reference) for s in sections}
    judged = judge_claims([s.configs for s in sections])
    out = Path(out) if out is not None else dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    figures = draw_figures(sections, out / "figures") if draw else {}
    md = out / "report.md"
    md.write_text(
        render_markdown(
            dirs, sections, runs, paper_files, figures, compared, judged, reference, select
        )
    )
    out_csv = out / "report.csv"
    write_csv(out_csv, runs, rows, configs)
    summary, paired, per_photo = out / "summary.csv", out / "paired.csv", out / "per_photo.csv"
    write_summary(summary, sections, select)
    flat = [c for cs in compared.values() for c in cs]
    write_paired(paired, flat)
    write_per_photo(per_photo, flat)
    figs = [p for ps in figures.values() for p in ps]
    loud = [
        f"{c.label}: {c.selection.mismatch}"
        for c in configs
        if c.selection is not None and c.selection.mismatch
    ]
    rep = Report(runs, sections, md, out_csv, figs, summary, paired, flat, judged, per_photo, loud)
    if wandb:
        from dcvq.report.wandb_report import log_report

        rep.wandb_dir = log_report(
            runs,
            out,
            {"summary": summary, "paired": paired},
            judged,
            figs,
            config={
                "sweep_dirs": [str(d) for d in dirs],
                "select": list(select),
                "pool_devices": pool_devices,
                "steps": steps,
                "reference": reference,
            },
            group=wandb_group,
            project=wandb_project,
        )
    return rep


def parser() -> argparse.ArgumentParser:
    """The command line's options."""
    p = argparse.ArgumentParser(
        prog="python -m dcvq.report",
        description="Collect sweeps' eval.json files into the paper's tables, figures and"
        " verdicts.",
    )
    p.add_argument(
        "sweep_dirs",
        type=Path,
        nargs="+",
        metavar="SWEEP_DIR",
        help="a multirun sweep dir (or any folder above job dirs); several: e.g. a selection"
        " sweep and the final one (then --out is needed); report.md, report.csv, summary.csv,"
        " paired.csv, per_photo.csv and figures/ are written to the sweep dir unless --out"
        " says",
    )
    p.add_argument(
        "--paper",
        action="append",
        type=Path,
        default=None,
        help="CSV of the paper's rows (tables.csv columns); repeatable; "
        "default: experiments/*/paper.csv",
    )
    p.add_argument(
        "--table",
        choices=[*TABLE_ORDER, "s1"],
        default=None,
        help="lay every run out as a row of this table (default: from the "
        "experiment=tableX... choice of each run)",
    )
    p.add_argument(
        "--reference",
        default=None,
        metavar="ROW",
        help="the row the paired comparisons compare every other with: a row label "
        "(e.g. 'VQ-GAN, 512 codes') or a quantizer option (e.g. s128_s128); default: "
        "VQ-GAN (vq at the same codebook size when there are several)",
    )
    p.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="KEY",
        help="a dotted config key (e.g. trainer.lr) whose value is chosen per row: the value"
        " with the best mean validation PSNR over its seeds; the row reports its runs at"
        " that value (on the test split where there is one); repeatable",
    )
    p.add_argument(
        "--pool-devices",
        action="store_true",
        help="count runs of different device types or torch versions as seeds of one row"
        " (default: one row per device type and torch version)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help="the budget (trainer.max_steps) the rows report; runs at 2N are the budget"
        " check (default: the budget with the most seeds at one setting)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the report there instead of into the sweep dir",
    )
    p.add_argument(
        "--wandb",
        action="store_true",
        help="also log the report as one wandb run (job type report) in the sweep's group:"
        " offline unless WANDB_MODE or an API key says online",
    )
    p.add_argument(
        "--wandb-group", default=None, metavar="NAME", help="the wandb group (default: the sweep's)"
    )
    p.add_argument(
        "--wandb-project",
        default=None,
        metavar="NAME",
        help="the wandb project (default: the sweep's, or dcvq)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (2: no such sweep, or an option no run
    answers to)."""
    args = parser().parse_args(argv)
    try:
        rep = report(
            args.sweep_dirs,
            args.paper,
            args.table,
            args.reference,
            args.out,
            args.select,
            args.pool_devices,
            args.steps,
            args.wandb,
            args.wandb_group,
            args.wandb_project,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done = sum(r.ok for r in rep.runs)
    print(f"{len(rep.runs)} runs ({done} finished, {len(rep.runs) - done} missing)")
    for text in rep.warnings or []:
        print(f"WARNING: {text}", file=sys.stderr)
    print(
        f"wrote {rep.markdown}, {rep.csv}, {rep.summary}, {rep.paired}, {rep.per_photo} and"
        f" {len(rep.figures)} figures"
    )
    if rep.wandb_dir is not None:
        print(f"wandb: the report's run is in {rep.wandb_dir}")
    return 0
