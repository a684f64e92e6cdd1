"""Collect a sweep's results into the paper's tables and figures.

``python -m dcvq.report SWEEP_DIR [--paper CSV ...] [--table 1|2|3|S1]``

Every job directory below ``SWEEP_DIR`` (a folder with ``.hydra/config.yaml``, at any
depth) becomes one row, named as the paper names it (``VQ-GAN``, ``Dual Codebook``
``T-128``/``S-128``, the baselines); a quantizer or baseline option the paper does not
have is named after the option. The paper's numbers (``experiments/*/paper.csv``) sit
next to each matching row. Writes ``SWEEP_DIR/report.md``, ``report.csv`` and
``figures/``. How to read them: ``experiments/README.md``.

- :mod:`~dcvq.report.collect`: job dirs -> :class:`Run` (config, eval.json, progress)
- :mod:`~dcvq.report.tables`: the paper's rows, sections, markdown and CSV
- :mod:`~dcvq.report.figures`: matplotlib figures (codebook usage, reconstructions)
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
    Run,
    collect,
    dataset_name,
    describe,
    last_sample,
    read_run,
    table_of_experiment,
)
from dcvq.report.figures import (
    COLOURS,
    DEAD_COLOUR,
    DEFAULT_COLOUR,
    draw_figures,
    reconstruction_figure,
    usage_figure,
    usage_section_figure,
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
)

__all__ = [
    "BASELINE_NAMES",
    "CODEBOOK_ORDER",
    "COLOURS",
    "DATASET_NAMES",
    "DEAD_COLOUR",
    "DEFAULT_COLOUR",
    "DUAL",
    "EXPERIMENTS_DIR",
    "METRICS",
    "PAPER_QUANTIZERS",
    "QUANTIZER_NAMES",
    "TABLE_ORDER",
    "Line",
    "PaperRow",
    "Report",
    "Run",
    "Section",
    "build_sections",
    "collect",
    "dataset_name",
    "default_paper_files",
    "describe",
    "draw_figures",
    "last_sample",
    "load_paper",
    "main",
    "match",
    "off_scale",
    "psnr_bound_on_vqct_scale",
    "read_run",
    "reconstruction_figure",
    "render_markdown",
    "report",
    "table_of_experiment",
    "usage_figure",
    "usage_section_figure",
    "write_csv",
]
