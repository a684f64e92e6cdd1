"""Collect a sweep's results into the paper's tables and figures.

``python -m dcvq.report SWEEP_DIR [--paper CSV ...] [--table 1|2|3|S1] [--reference ROW]``

Every job directory below ``SWEEP_DIR`` (a folder with ``.hydra/config.yaml``, at any
depth) is a run; runs that differ only in their seed are one row (a
:class:`Configuration`), named as the paper names it (``VQ-GAN``, ``Dual Codebook``
``T-128``/``S-128``, the baselines); a quantizer or baseline option the paper does not
have is named after the option. The paper's numbers (``experiments/*/paper.csv``) sit
next to each matching row. Writes ``SWEEP_DIR/report.md``, ``report.csv`` (per run),
``summary.csv`` (per row: mean and 95% interval over seeds), ``paired.csv`` (each row
against a reference, image by image) and ``figures/``; report.md ends with verdicts on
the paper's claims. How to read them: ``experiments/README.md``.

- :mod:`~dcvq.report.collect`: job dirs -> :class:`Run` (config, eval.json, per-image
  results, progress); runs -> :class:`Configuration` (seeds grouped)
- :mod:`~dcvq.report.stats`: intervals over seeds, paired comparisons over images,
  training-curve gains
- :mod:`~dcvq.report.tables`: the paper's rows, sections, markdown and CSV
- :mod:`~dcvq.report.figures`: matplotlib figures (codebook usage, reconstructions,
  metrics with intervals, PSNR curves)
- :mod:`~dcvq.report.verdicts`: the paper's claims judged on the sweep
- :mod:`~dcvq.report.cli`: :func:`report` and the command line
"""

from dcvq.report.cli import Report, main, report
from dcvq.report.collect import (
    BASELINE_NAMES,
    CODEBOOK_ORDER,
    DATASET_NAMES,
    DUAL,
    PAPER_QUANTIZERS,
    QUANTIZER_NAMES,
    Configuration,
    PerImage,
    Run,
    collect,
    dataset_name,
    describe,
    group_runs,
    last_sample,
    read_history,
    read_per_image,
    read_run,
    result_config,
    table_of_experiment,
)
from dcvq.report.figures import (
    COLOURS,
    DEAD_COLOUR,
    DEFAULT_COLOUR,
    draw_figures,
    metrics_figure,
    psnr_curve_figure,
    reconstruction_figure,
    usage_figure,
    usage_section_figure,
)
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
from dcvq.report.tables import (
    EXPERIMENTS_DIR,
    METRICS,
    TABLE_ORDER,
    Line,
    PaperRow,
    Section,
    build_sections,
    default_paper_files,
    load_paper,
    match,
    off_scale,
    psnr_bound_on_vqct_scale,
    render_markdown,
    write_csv,
    write_paired,
    write_summary,
)
from dcvq.report.verdicts import Verdict, judge_claims, render_verdicts

__all__ = [
    "BASELINE_NAMES",
    "CODEBOOK_ORDER",
    "COLOURS",
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
    "TABLE_ORDER",
    "Verdict",
    "build_sections",
    "ci95",
    "collect",
    "compare",
    "comparisons",
    "config_gain_last_fifth",
    "dataset_name",
    "default_paper_files",
    "describe",
    "draw_figures",
    "estimate",
    "find_reference",
    "group_runs",
    "judge_claims",
    "last_sample",
    "load_paper",
    "main",
    "match",
    "metrics_figure",
    "off_scale",
    "paired",
    "psnr_bound_on_vqct_scale",
    "psnr_curve",
    "psnr_curve_figure",
    "psnr_gain_last_fifth",
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
    "table_of_experiment",
    "usage_figure",
    "usage_section_figure",
    "write_csv",
    "write_paired",
    "write_summary",
]
