"""Collect sweeps' results into the paper's tables, figures and verdicts.

``python -m dcvq.report SWEEP_DIR [SWEEP_DIR ...] [--select KEY] [--pool-devices] [--wandb]``

Every job directory below a ``SWEEP_DIR`` (a folder with ``.hydra/config.yaml``, at any
depth) is a run; runs that differ only in their seed are one row (a
:class:`Configuration`), named as the paper names it (``VQ-GAN``, ``Dual Codebook``
``T-128``/``S-128``, the baselines); a quantizer or baseline option the paper does not
have is named after the option. A row reports its runs at one budget and, with
``--select``, at the value chosen on the validation split; its numbers are on the test
split where the runs scored one. The paper's numbers (``experiments/*/paper.csv``) sit
next to each matching row. Writes ``report.md``, ``report.csv`` (per run), ``summary.csv``
(per row: mean and 95% interval over seeds, bits per image), ``paired.csv`` (each row
against a reference: intervals over images, source photos and seeds), ``per_photo.csv``
and ``figures/``; report.md ends with verdicts on the paper's claims. How to read them:
``experiments/README.md``.

- :mod:`~dcvq.report.collect`: job dirs -> :class:`Run` (config, eval.json per split,
  per-image results, progress, device)
- :mod:`~dcvq.report.rows`: runs -> :class:`Configuration` (seeds grouped; budgets,
  selected values, devices, duplicates)
- :mod:`~dcvq.report.stats`: intervals over seeds, paired comparisons over images,
  training-curve gains
- :mod:`~dcvq.report.cluster`: intervals that resample source photos
- :mod:`~dcvq.report.rate`: bits per image
- :mod:`~dcvq.report.budget`: the budget check (twice the steps)
- :mod:`~dcvq.report.verdicts`: the paper's claims judged on the sweep
- :mod:`~dcvq.report.paper`: the paper's rows; :mod:`~dcvq.report.sections`: the
  report's sections; :mod:`~dcvq.report.markdown`: report.md;
  :mod:`~dcvq.report.csvfiles`: the CSV files
- :mod:`~dcvq.report.figures`: matplotlib figures (codebook usage, reconstructions,
  metrics with intervals, PSNR curves, codebook geometry over steps, selection,
  rate-distortion)
- :mod:`~dcvq.report.wandb_report`: ``--wandb``
- :mod:`~dcvq.report.cli`: :func:`report` and the command line
"""

from dcvq.report.budget import BudgetCheck, budget_check
from dcvq.report.cli import Report, main, report
from dcvq.report.cluster import ClusterInterval, SourceMean, cluster_intervals, source_means
from dcvq.report.collect import (
    BASELINE_NAMES,
    CODEBOOK_ORDER,
    DATASET_NAMES,
    DUAL,
    PAPER_QUANTIZERS,
    QUANTIZER_NAMES,
    TEST,
    VAL,
    PerImage,
    Run,
    collect,
    collect_sweeps,
    dataset_name,
    describe,
    last_sample,
    read_history,
    read_per_image,
    read_run,
    source_of,
    table_of_experiment,
)
from dcvq.report.csvfiles import write_csv, write_paired, write_per_photo, write_summary
from dcvq.report.figures import (
    COLOURS,
    DEAD_COLOUR,
    DEFAULT_COLOUR,
    codebook_curve,
    codebook_geometry_figure,
    draw_figures,
    metrics_figure,
    psnr_curve_figure,
    rate_figure,
    reconstruction_figure,
    selection_figure,
    usage_section_figure,
)
from dcvq.report.markdown import render_markdown
from dcvq.report.paper import (
    EXPERIMENTS_DIR,
    METRICS,
    PaperRow,
    default_paper_files,
    load_paper,
    match,
    off_scale,
    psnr_bound_on_vqct_scale,
)
from dcvq.report.rate import bits_per_image, bits_per_position, positions, prior_bits_per_image
from dcvq.report.rows import Configuration, Selection, group_runs, main_budget, result_config
from dcvq.report.sections import TABLE_ORDER, Line, Section, build_sections
from dcvq.report.stats import (
    Comparison,
    Estimate,
    Paired,
    ci95,
    compare,
    comparisons,
    config_gain_last_fifth,
    estimate,
    find_reference,
    paired,
    psnr_curve,
    psnr_gain_last_fifth,
    seed_estimates,
    seed_values,
)
from dcvq.report.verdicts import Verdict, judge_claims, render_verdicts

__all__ = [
    "BASELINE_NAMES",
    "CODEBOOK_ORDER",
    "COLOURS",
    "BudgetCheck",
    "ClusterInterval",
    "Comparison",
    "Configuration",
    "DATASET_NAMES",
    "DEAD_COLOUR",
    "DEFAULT_COLOUR",
    "DUAL",
    "EXPERIMENTS_DIR",
    "Estimate",
    "Line",
    "METRICS",
    "PAPER_QUANTIZERS",
    "Paired",
    "PaperRow",
    "PerImage",
    "QUANTIZER_NAMES",
    "Report",
    "Run",
    "Section",
    "Selection",
    "SourceMean",
    "TABLE_ORDER",
    "TEST",
    "VAL",
    "Verdict",
    "bits_per_image",
    "bits_per_position",
    "budget_check",
    "build_sections",
    "ci95",
    "cluster_intervals",
    "collect",
    "collect_sweeps",
    "compare",
    "comparisons",
    "config_gain_last_fifth",
    "dataset_name",
    "default_paper_files",
    "describe",
    "codebook_curve",
    "codebook_geometry_figure",
    "draw_figures",
    "estimate",
    "find_reference",
    "group_runs",
    "judge_claims",
    "last_sample",
    "load_paper",
    "main",
    "main_budget",
    "match",
    "metrics_figure",
    "off_scale",
    "paired",
    "positions",
    "prior_bits_per_image",
    "psnr_bound_on_vqct_scale",
    "psnr_curve",
    "psnr_curve_figure",
    "psnr_gain_last_fifth",
    "rate_figure",
    "read_history",
    "read_per_image",
    "read_run",
    "reconstruction_figure",
    "render_markdown",
    "render_verdicts",
    "report",
    "result_config",
    "seed_estimates",
    "seed_values",
    "selection_figure",
    "source_means",
    "source_of",
    "table_of_experiment",
    "usage_section_figure",
    "write_csv",
    "write_paired",
    "write_per_photo",
    "write_summary",
]
